"""Vector labels end to end: a build of the three vector datasets (SYNTHETIC samples) with the real
essentiality table, published with the dataset (checksummed), served by the stream in every format
and both layouts as ``labels[name]`` / ``label_mask[name]`` aligned with the batch's sample ids."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.config import BuildConfig
from pipeline.dataset.labels import open_labels
from pipeline.dataset.sources import DATASETS
from pipeline.precompute.config import PrecomputeConfig
from pipeline.sequence import run_build

VECTOR = ("kemmeren2014", "sameith2015", "ohya2005")
pytestmark = pytest.mark.skipif(not all(n in DATASETS for n in VECTOR),
                                reason="the vector-label datasets are not registered in pipeline.dataset.sources")

PRE = dict(artifacts=["masks", "khop", "adjacency-rows"], khop=(1,), chunk_samples=256, lmdb=True, adjacency_steps=4,
           adjacency_rows=8, adjacency_negatives=8, dask_processes=False, workers=1)


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("vectors")
    res = run_build(BuildConfig.create(graphs=["string12_fusion"], out=tmp / "out", datasets=[*VECTOR, "essentiality"],
                                       precompute=PrecomputeConfig(**PRE)))
    return Path(res.graph).parent


def test_labels_published_with_the_dataset(build):
    m = json.loads((build / "dataset" / "manifest.json").read_text())
    specs = m["vector_labels"]
    assert sorted(specs) == ["kemmeren2014.expression", "ohya2005.morphology", "sameith2015.expression"]
    assert specs["kemmeren2014.expression"]["rows"] == 24 and specs["kemmeren2014.expression"]["pvalue"]
    assert specs["ohya2005.morphology"]["width"] == 501 and specs["sameith2015.expression"]["rows"] == 15
    assert any(k.startswith("labels.zarr/ohya2005.morphology/values/") for k in m["files"])
    from pipeline.verify import main as verify  # noqa: PLC0415
    assert verify([str(build)]) == 0


def test_one_sample_per_genotype_carries_every_label(build):
    """A deletion in Kemmeren, Ohya and the essentiality table is one sample with all their labels."""
    from pipeline.dataset.store import open_dataset  # noqa: PLC0415

    samples = open_dataset(build / "dataset").read()
    st = open_labels(build / "dataset")
    ids = samples["sample_id"].to_numpy()
    has = {n: st.read(n, ids)[1].any(axis=1) for n in st.names}
    singles = samples["n_perturbed"].to_numpy() == 1
    assert has["kemmeren2014.expression"][singles].sum() == 24 and has["ohya2005.morphology"].sum() == 60
    assert has["sameith2015.expression"][~singles].sum() == 7  # the double mutants
    ess = samples["essential"].is_not_null().to_numpy()
    both = has["kemmeren2014.expression"] & ess
    assert both.sum() >= 20  # the sampled deletions are YKO genes: one sample, both labels
    assert samples.filter(pl.Series(both))["source"].str.contains("kemmeren2014").all()


def test_summary_names_each_vector_label(build):
    from pipeline.dataset.stages import summarize_dataset  # noqa: PLC0415
    text = summarize_dataset(build / "dataset")
    assert "vector label kemmeren2014.expression: 24 samples x 400" in text
    assert "vector label ohya2005.morphology: 60 samples x 501" in text


@pytest.mark.parametrize("fmt,layout", [("index", "zarr"), ("graph", "zarr"), ("khop", "zarr"),
                                        ("transformer", "zarr"), ("graph", "lmdb")])
def test_every_format_serves_labels_aligned(build, fmt, layout):
    from pipeline.stream import PerturbationStream  # noqa: PLC0415

    st = open_labels(build / "dataset")
    ds = PerturbationStream(build, split=None, fmt=fmt, layout=layout, batch_size=64, seed=1)
    names = ["kemmeren2014.expression", "ohya2005.morphology", "sameith2015.expression"]
    seen, labelled = set(), 0
    for b in ds:
        assert sorted(b.labels) == names == sorted(b.label_mask)
        ids, pad = b.sample_ids.numpy(), b.pad.numpy()
        for n in names:
            v, m = st.read(n, ids)
            m[pad], v[pad] = False, 0
            assert b.labels[n].dtype.is_floating_point and b.labels[n].shape == v.shape
            assert np.array_equal(b.labels[n].numpy(), v) and np.array_equal(b.label_mask[n].numpy(), m)
            labelled += int(m.any(axis=1).sum())
        seen.update(ids[~pad].tolist())
    assert len(seen) == ds.n_samples and labelled >= 24 + 15 + 60 - 1


def test_selection_pvalues_and_pickled_batches(build):
    from pipeline.stream import PerturbationStream  # noqa: PLC0415

    ds = PerturbationStream(build, split=None, fmt="graph", batch_size=32, vector_labels=("kemmeren2014.expression.p",))
    st = open_labels(build / "dataset")
    b = next(b for b in ds if b.label_mask["kemmeren2014.expression.p"].any())
    assert list(b.labels) == ["kemmeren2014.expression.p"]
    p, m = st.read("kemmeren2014.expression", b.sample_ids.numpy(), pvalue=True)
    assert np.array_equal(b.labels["kemmeren2014.expression.p"].numpy(), p)
    back = pickle.loads(pickle.dumps(b))  # the DataLoader hand-over (one blob)
    assert np.array_equal(back.label_mask["kemmeren2014.expression.p"].numpy(), m)
    none = PerturbationStream(build, split=None, fmt="graph", batch_size=32, vector_labels=())
    assert next(iter(none)).labels == {}
    one = ds.get_batch(np.array([int(b.sample_ids[0])]))  # map-style access serves them too
    assert one.labels["kemmeren2014.expression.p"].shape == (1, 400)


def test_label_cache_off_serves_the_same_batches(build):
    from pipeline.stream import PerturbationStream  # noqa: PLC0415

    kw = dict(split="train", fmt="index", batch_size=16, seed=3)
    cached, plain = PerturbationStream(build, **kw), PerturbationStream(build, vector_cache_bytes=0, **kw)
    for epoch in (0, 1):  # the second epoch of the cached stream comes from its cache
        cached.set_epoch(epoch)
        plain.set_epoch(epoch)
        for a, b in zip(cached, plain, strict=True):
            assert a.sample_ids.tolist() == b.sample_ids.tolist()
            for n in a.labels:
                assert (a.labels[n] == b.labels[n]).all() and (a.label_mask[n] == b.label_mask[n]).all()
    assert plain.vlabels._cached == 0 < cached.vlabels._cached
    with pytest.raises(ValueError, match="vector_cache_bytes must be an integer >= 0"):
        PerturbationStream(build, vector_cache_bytes=-1)


def test_workers_ship_the_labels(build):
    """Through two DataLoader workers (fork; each opens the label store itself) the batches carry the
    same labels as in process."""
    from pipeline.stream import PerturbationStream  # noqa: PLC0415
    from pipeline.stream.loader import StreamLoader  # noqa: PLC0415

    ds = PerturbationStream(build, split=None, fmt="graph", batch_size=32, seed=2,
                            vector_labels=("ohya2005.morphology",))
    here = {tuple(b.sample_ids.tolist()): b for b in ds}
    got = list(StreamLoader(ds, num_workers=2, group=2, multiprocessing_context="fork"))
    assert len(got) == len(here)
    for b in got:
        want = here[tuple(b.sample_ids.tolist())]
        assert (b.labels["ohya2005.morphology"] == want.labels["ohya2005.morphology"]).all()
        assert (b.label_mask["ohya2005.morphology"] == want.label_mask["ohya2005.morphology"]).all()


def test_verify_names_a_damaged_label_chunk(build, tmp_path, capsys):
    import shutil  # noqa: PLC0415

    from pipeline.verify import main as verify  # noqa: PLC0415

    copy = tmp_path / "b"
    shutil.copytree(build, copy, symlinks=True)
    chunk = copy / "dataset" / "labels.zarr" / "ohya2005.morphology" / "values" / "c" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[100] ^= 0xFF
    chunk.write_bytes(bytes(data))
    assert verify([str(copy)]) == 1
    out = capsys.readouterr()
    assert "labels.zarr/ohya2005.morphology/values rows 0..59" in out.out + out.err
