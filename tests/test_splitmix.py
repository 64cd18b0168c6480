"""splitmix64 against an independent pure-Python reference (Steele, Lea & Flood 2014; Vigna's splitmix64.c).

The split labels, the epoch order and the sampled adjacency rows are all keyed by these hashes: a
changed constant or shift silently changes every published build, so the numpy code is checked
against integers computed here, not against itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.splitmix import splitmix64, splitmix64_, uniform01

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix(z: int) -> int:
    """The splitmix64 finaliser, on Python integers (arbitrary precision, masked to 64 bits)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def reference(x: int, seed: int) -> int:
    """The module's contract: splitmix64 of ``x + seed * golden`` (wrapping)."""
    return mix((x + (seed & MASK) * GOLDEN) & MASK)


def test_reference_gives_the_published_sequence():
    # SplitMix64 from state 0: state += golden; output mix(state). Published first outputs.
    state, out = 0, []
    for _ in range(3):
        state = (state + GOLDEN) & MASK
        out.append(mix(state))
    assert out == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def test_seed_k_is_the_kth_output_from_state_zero():
    # x + seed * golden: hashing 0 with seed k is the k-th output of the generator started at 0
    got = [int(splitmix64(np.zeros(1, np.uint64), seed=k)[0]) for k in (1, 2, 3)]
    assert got == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


SEEDS = [0, 1, 3, 0x1234_5678_9ABC, (1 << 63) + 5, MASK, -1, -12345]


@pytest.mark.parametrize("seed", SEEDS)
def test_equals_the_reference(seed):
    rng = np.random.default_rng(0)
    x = np.concatenate([np.array([0, 1, 2, GOLDEN, MASK - 1, MASK], dtype=np.uint64),
                        rng.integers(0, MASK, 2000, dtype=np.uint64, endpoint=True)])
    want = [reference(v, seed) for v in x.tolist()]
    assert splitmix64(x, seed).tolist() == want
    z = x.copy()
    out = splitmix64_(z, seed)
    assert out is z and z.tolist() == want  # in place, into the caller's array
    signed = x.astype(np.int64)  # int64 ids (the callers' usual dtype) hash as their uint64 bits
    assert splitmix64(signed, seed).tolist() == want


def test_splitmix64_does_not_touch_its_input():
    x = np.arange(10, dtype=np.uint64)
    splitmix64(x, 7)
    assert x.tolist() == list(range(10))


def test_uniform01_is_the_top_53_bits():
    x = np.arange(500, dtype=np.uint64) * np.uint64(977)
    for seed in (0, 9):
        want = [(reference(v, seed) >> 11) / 2.0**53 for v in x.tolist()]
        u = uniform01(x, seed)
        assert u.dtype == np.float64 and u.tolist() == want
        assert (u >= 0).all() and (u < 1).all()
