"""gc_paused: nests across threads, restores the collector's state, and covers LMDB batch reads."""

from __future__ import annotations

import gc
import threading

import numpy as np

from pipeline.core.gcpause import gc_paused


def test_nested_and_threaded_pauses_enable_once_at_the_end():
    assert gc.isenabled()
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with gc_paused():
            inside.set()
            release.wait(5)

    t = threading.Thread(target=other)
    with gc_paused():
        t.start()
        inside.wait(5)
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert not gc.isenabled()  # the other thread's block still runs
    release.set()
    t.join(5)
    assert gc.isenabled()


def test_a_disabled_collector_stays_disabled():
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_record_batches_are_decoded_with_the_collector_paused(tmp_path, monkeypatch):
    from pipeline.precompute.records import reader
    from tests.test_lmdb_records import write_store

    path = tmp_path / "records.lmdb"
    write_store(path, [(0, 0, 40)])
    seen = []
    decode = reader.decode_batch
    monkeypatch.setattr(reader, "decode_batch", lambda *a, **k: (seen.append(gc.isenabled()), decode(*a, **k))[1])
    r = reader.open_records(path)
    r.get_batch(np.arange(10))
    r.close()
    assert seen == [False] and gc.isenabled()
