"""Per-sample training records in LMDB, in a documented binary layout (no pickle).

A record holds, for one sample, a fixed list of named 1-D arrays ("sections"); the list
and the dtypes (the :class:`RecordSchema`) are stored once per store. A precompute store
writes ``genes``, ``types``, ``node_flips``, one ``edges:<type>`` per edge type and one
``khop:<mode>:k<k>`` per k-hop set (``pipeline.precompute.stages.record_sections``), and a
copy of its small ``genes``, ``types``, ``node_flips`` in the ``core`` database (what the
stream reads: a few pages a chunk instead of every page of every record). The exact layout
is the "records" section of ``storage_layout.md``.

- :mod:`.format`: keys, schema, record encoding and decoding (no LMDB);
- :mod:`.writer`: :class:`RecordWriter`, one transaction per chunk, resumable;
- :mod:`.reader`: :func:`open_records`, :class:`RecordReader` (fork- and spawn-safe), verify.

>>> import tempfile
>>> import numpy as np
>>> schema = RecordSchema((("genes", np.int32), ("types", np.uint8)))
>>> tmp = tempfile.TemporaryDirectory()
>>> with RecordWriter(f"{tmp.name}/records.lmdb", schema) as w:
...     w.put_chunk(0, 0, {"genes": (np.array([0, 2, 3]), np.array([5, 7, 9])),
...                        "types": (np.array([0, 2, 3]), np.array([1, 1, 2]))})
...     w.finish({"n_samples": 2})
>>> r = open_records(f"{tmp.name}/records.lmdb")
>>> len(r), r.get(0)["genes"].tolist(), r.verify()
(2, [5, 7], [])
>>> r.close(); tmp.cleanup()
"""

from pipeline.precompute.records.format import (
    CHUNK_PREFIX,
    CORE_DB,
    CORE_SECTIONS,
    FORMAT,
    FORMAT_VERSION,
    MAGIC,
    MANIFEST_KEY,
    META_DB,
    RECORD_VERSION,
    SAMPLES_DB,
    SCHEMA_KEY,
    RecordSchema,
    chunk_key,
    decode_batch,
    decode_record,
    encode_records,
    header_size,
    sample_key,
)
from pipeline.precompute.records.reader import RecordReader, open_records
from pipeline.precompute.records.writer import DEFAULT_MAP_SIZE, RecordWriter

__all__ = [
    "CHUNK_PREFIX", "CORE_DB", "CORE_SECTIONS", "DEFAULT_MAP_SIZE", "FORMAT", "FORMAT_VERSION", "MAGIC",
    "MANIFEST_KEY", "META_DB",
    "RECORD_VERSION", "SAMPLES_DB", "SCHEMA_KEY", "RecordReader", "RecordSchema", "RecordWriter",
    "chunk_key", "decode_batch", "decode_record", "encode_records", "header_size", "open_records",
    "sample_key",
]
