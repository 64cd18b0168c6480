"""From phenotype observations to samples: gene indices, replicate policy, splits.

Readers (:mod:`pipeline.sources.phenotypes.kuzmin`, :mod:`pipeline.sources.phenotypes.costanzo`) yield
observations in :data:`pipeline.core.perturbations.OBSERVATION_SCHEMA` (systematic
names, perturbation type codes, phenotypes) as polars LazyFrames. This module
turns them into the dataset's samples, lazily, so that tens of millions of rows
stream through in bounded memory:

1. :func:`encode` maps names to the build's gene index and packs each strain (its
   (gene index, type) pairs) into one uint64 key; observations naming a gene outside
   the index get a tagged key, so they are counted in the same pass and dropped.
   A strain of more than :data:`MAX_GENES` genes (an engineered strain: any number of
   deletions and additions) gets a *long* key instead, ``LONG | 62-bit hash`` of its
   sorted slots (:func:`long_keys`), and carries its slots in ``long_slots``;
   :func:`split_long` sets them aside (one row per distinct long strain), so the
   aggregation groups long and short strains alike, exactly (a hash collision between
   two different strains is detected and is an error).
   (The dataset stage reads text tables with :mod:`pipeline.dataset.onepass`, which
   yields the same encoded frame in one pass over the file.)
2. :func:`aggregate` merges replicate observations of the same strain (same key):
   mean, count and spread per phenotype.
3. :func:`assign_ids_and_splits` numbers samples in a canonical order, unpacks the
   keys into ``gene_idx``/``types`` lists and labels every split of
   :data:`pipeline.dataset.splits.SPLITS`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from pipeline.core.genes import GeneIndex
from pipeline.core.ragged import indptr_from_lengths, owner
from pipeline.core.splitmix import splitmix64
from pipeline.dataset.splits import SPLITS

#: Phenotype value columns of an observation, each aggregated over replicates.
VALUES = ["fitness", "interaction", "interaction_raw", "smf_query", "smf_array"]
#: Value columns with their own replicate rule (root mean square; the largest p-value).
_COMBINED = ("fitness_std", "interaction_p")
#: Genes a packed (short) strain key holds; strains of more genes get long keys.
MAX_GENES = 3
#: Most genes one strain may have (``n_perturbed`` is uint8).
MAX_STRAIN_GENES = 255


#: Bits of one (gene, type) slot of a strain key: 16 for gene index + 1, 3 for the type code.
SLOT_BITS = 19
MAX_INDEX = (1 << 16) - 2
#: Keys at or above this mark observations naming a gene outside the index (tag in the low bits).
UNKNOWN = np.uint64(1 << 63)
#: Keys in [LONG, UNKNOWN) are strains of more than MAX_GENES genes: LONG | a 62-bit hash of their slots.
LONG = np.uint64(1 << 62)


def extra_labels(columns: list[str]) -> list[str]:
    """The label columns beyond the interaction tables' value columns (a dataset's own labels),
    in the order given: every column that is not one of the fixed observation columns."""
    fixed = {*VALUES, *_COMBINED, "key", "source_bits", "source_row", "screen", "n_rows", "long_slots", "source",
             "source_file", "genes", "types", "n_perturbed"}
    return [c for c in columns if c not in fixed and not c.startswith("_")]


def long_keys(flat: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The long key of each strain from its sorted slots (uint32 ``flat``, strain ``i`` is
    ``flat[offsets[i]:offsets[i + 1]]``): ``LONG | (h >> 2)``, ``h`` a splitmix64 fold of the
    length and every slot with its position. A pure function of the strain: the same key in
    every build, whatever else is in it (splits hash it).

    >>> k = long_keys(np.array([9, 17, 25, 33, 9, 17, 25, 41], np.uint32), np.array([0, 4, 8]))
    >>> bool(k[0] != k[1]) and bool(((k >= LONG) & (k < UNKNOWN)).all())
    True
    """
    lens = np.diff(offsets).astype(np.int64)
    h = splitmix64(lens.astype(np.uint64), 0x10C6)
    for j in range(int(lens.max(initial=0))):
        has = lens > j
        h[has] = splitmix64(h[has] ^ flat[offsets[:-1][has] + j].astype(np.uint64), j + 1)
    return LONG | (h >> np.uint64(2))


def strain_slots(names: pl.Series, types: pl.Series, genes: GeneIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted slots flat, offsets, unknown flag) per strain from list Series of systematic names
    and type codes: each strain's slots ascending, as a packed key orders them."""
    lens = names.list.len().fill_null(0).to_numpy().astype(np.int64)
    offsets = indptr_from_lengths(lens)
    flat_names = names.explode().drop_nulls() if offsets[-1] else pl.Series([], dtype=pl.String)
    idx = genes.lookup(flat_names)
    flat_t = types.explode().drop_nulls().to_numpy().astype(np.int64) if offsets[-1] else np.zeros(0, np.int64)
    row = owner(offsets)
    unknown = np.zeros(len(lens), dtype=bool)
    unknown[row[idx < 0]] = True
    slots = slot_values(idx, flat_t)
    order = np.lexsort((slots, row))
    return slots[order], offsets, unknown


def _long_of_struct(s: pl.Series, genes: GeneIndex, tag: int) -> pl.Series:
    """Long keys (UNKNOWN + tag where a gene is outside the index) and slot lists of a batch of
    (genes, types) rows of more than MAX_GENES genes (null for the others)."""
    names, types = s.struct.field("genes"), s.struct.field("types")
    is_long = (names.list.len().fill_null(0) > MAX_GENES).to_numpy()
    key = np.zeros(len(s), dtype=np.uint64)
    lens = np.zeros(len(s), dtype=np.int64)
    flat = np.zeros(0, dtype=np.uint32)
    if is_long.any():  # the long rows' slots in row order; the other rows get empty lists, then null
        at = np.flatnonzero(is_long)
        flat, offsets, unknown = strain_slots(names.gather(at), types.gather(at), genes)
        k = long_keys(flat, offsets)
        k[unknown] = UNKNOWN + np.uint64(tag)
        key[at] = k
        lens[at] = np.diff(offsets)
    lists = _lists("long_slots", flat.astype(np.uint32), indptr_from_lengths(lens), pl.UInt32)
    mask = pl.Series(is_long)
    return pl.DataFrame([pl.Series("long_key", key), lists]).select(
        pl.when(mask).then(pl.col("long_key")).alias("long_key"),
        pl.when(mask).then(pl.col("long_slots")).alias("long_slots")).to_struct("_long")


def slot_values(gene_idx: np.ndarray, types: np.ndarray) -> np.ndarray:
    """The slot (uint32) of each (gene index, type code): ``(gene + 1) << 3 | type``, 0 where gene is -1.

    >>> slot_values(np.array([0, -1, 2]), np.array([1, 5, 2])).tolist()
    [9, 0, 26]
    """
    g = np.asarray(gene_idx)
    return np.where(g >= 0, (g.astype(np.int64) + 1) * 8 + np.asarray(types, dtype=np.int64), 0).astype(np.uint32)


def pack_keys(slots: list[np.ndarray]) -> np.ndarray:
    """The uint64 strain keys of up to :data:`MAX_GENES` slot columns (uint32, 0 = no gene).

    Bit layout of a key, most significant first::

        bit  63      0 (set: UNKNOWN + input tag, an observation naming a gene outside the index)
        bits 57..62  0 (the canonical order puts the gene count at bit 58, above the key)
        bits 38..56  slot 0
        bits 19..37  slot 1
        bits  0..18  slot 2

    A slot is ``(gene index + 1) << 3 | type code`` (:func:`slot_values`), 0 for none.
    A strain's slots are sorted ascending, none last, so equal keys are equal strains
    and integer order is the canonical strain order.

    The columns are sorted by a three-comparator network *in place* (they are
    modified: at 20 million rows every fresh temporary costs its page faults).

    >>> pack_keys([np.array([26, 9], np.uint32), np.array([9, 0], np.uint32)]).tolist() == [
    ...     9 << 38 | 26 << 19, 9 << 38]
    True
    """
    if len(slots) > MAX_GENES:
        raise ValueError(f"a strain key holds at most {MAX_GENES} slots, got {len(slots)}")
    big = np.uint32(1 << SLOT_BITS)
    cols = [x for x in slots if x.any()]
    for x in cols:
        x[x == 0] = big

    def swap(i: int, j: int) -> None:  # cols[i] <- min, cols[j] <- max
        lo = np.minimum(cols[i], cols[j])
        np.maximum(cols[i], cols[j], out=cols[j])
        cols[i] = lo

    for i, j in ((0, 1), (0, 2), (1, 2)):  # a sorting network of three
        if j < len(cols):
            swap(i, j)
    key = np.zeros(len(slots[0]) if slots else 0, dtype=np.uint64)
    for i in range(MAX_GENES):
        key <<= np.uint64(SLOT_BITS)
        if i < len(cols):
            x = cols[i]
            x[x == big] = 0
            key |= x
    return key


def _keys_of_struct(s: pl.Series) -> pl.Series:
    """:func:`sample_key` of a struct of (gene index, type) columns, gene0, type0, gene1, ...
    (a batch of :func:`encode`'s rows)."""
    cols = [s.struct.field(f).to_numpy() for f in s.struct.fields]
    return pl.Series(sample_key(cols[::2], cols[1::2]), dtype=pl.UInt64)


def encode(obs: pl.LazyFrame, genes: GeneIndex, tag: int = 0, long: bool = False) -> pl.LazyFrame:
    """Replace ``genes``/``types`` by ``key`` (uint64): the strain's (gene index, type) pairs, packed.

    ``tag`` numbers the input (0..15); ``source`` becomes the bit ``source_bits = 1 << tag``.

    The pairs are sorted by gene index (then type) and packed most significant first,
    ``SLOT_BITS`` bits each, so integer order is the canonical strain order and equal
    keys are equal strains. Names are mapped by a join with the index, which streams
    (a ``replace`` would hold whole columns). An observation naming a gene outside the
    index gets ``key = UNKNOWN + tag``, so one pass also counts them per input.

    ``long=True``: strains may have more than :data:`MAX_GENES` genes; they get long keys and
    a ``long_slots`` list column (null on the other rows; :func:`split_long`). With
    ``long=False`` (the interaction tables: at most three genes, checked by their readers) the
    frame has no such column and a longer strain is an error.
    """
    if len(genes) > MAX_INDEX:
        raise ValueError(f"at most {MAX_INDEX} genes fit a strain key, got {len(genes)}")
    lookup = pl.LazyFrame({"_name": genes.table["id"],
                           "_idx": pl.Series(np.arange(len(genes), dtype=np.int32))})
    lf = obs
    slots, unknown = [], []
    for i in range(MAX_GENES):
        lf = lf.with_columns(pl.col("genes").list.get(i, null_on_oob=True).alias(f"_g{i}"),
                             pl.col("types").list.get(i, null_on_oob=True).alias(f"_t{i}"))
        lf = lf.join(lookup.rename({"_name": f"_g{i}", "_idx": f"_i{i}"}), on=f"_g{i}", how="left",
                     maintain_order="left")
        # a slot is absent where the gene or its type is (gene index -1)
        slots += [pl.when(pl.col(f"_t{i}").is_not_null()).then(pl.col(f"_i{i}")).fill_null(-1).alias(f"_sg{i}"),
                  pl.col(f"_t{i}").fill_null(0).alias(f"_st{i}")]
        unknown.append(pl.col(f"_g{i}").is_not_null() & pl.col(f"_i{i}").is_null())  # a name that did not map
    # packed by numpy, one streamed batch at a time (sorting lists per row is slow in polars)
    key = pl.struct(slots).map_batches(_keys_of_struct, return_dtype=pl.UInt64, is_elementwise=True)
    key = pl.when(pl.any_horizontal(unknown)).then(pl.lit(int(UNKNOWN) + tag, dtype=pl.UInt64)).otherwise(key)
    n = pl.col("genes").list.len()
    extra = []
    if long:
        lk = pl.struct("genes", "types").map_batches(
            lambda s: _long_of_struct(s, genes, tag), is_elementwise=True,
            return_dtype=pl.Struct({"long_key": pl.UInt64, "long_slots": pl.List(pl.UInt32)}))
        lf = lf.with_columns(lk.alias("_long"))
        key = pl.when(n > MAX_GENES).then(pl.col("_long").struct.field("long_key")).otherwise(key)
        extra = [pl.col("_long").struct.field("long_slots").alias("long_slots")]
    else:  # a reader bug, not bad input: the interaction readers check their gene counts
        fail = pl.when(n > MAX_GENES).then(pl.lit("a strain of more than three genes from a short reader"))
        key = key + fail.otherwise(pl.lit("0")).cast(pl.UInt64, strict=True)
    return lf.with_columns(key.alias("key"), *extra,
                           pl.lit(1 << tag, dtype=pl.UInt16).alias("source_bits"),  # strings are costly to group
                           pl.col("screen").cast(pl.Categorical)).drop(
        "genes", "types", "n_perturbed", "source", "source_file",
        *[f"_{c}{i}" for c in "gti" for i in range(MAX_GENES)], *(["_long"] if long else []))


def split_long(obs: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """(observations without ``long_slots``, one row per distinct long strain: ``key``, ``long_slots``);
    None when ``obs`` has no such column. Two different strains with one long key (a 62-bit hash
    collision) raise."""
    if "long_slots" not in obs.columns:
        return obs, None
    side = obs.filter(pl.col("long_slots").is_not_null()).select("key", "long_slots").unique(maintain_order=True)
    side = side.filter(pl.col("key") < int(UNKNOWN))
    if side["key"].n_unique() != side.height:
        raise ValueError("two different strains hash to one long strain key (a 62-bit collision): "
                         "report this with the input files")
    return obs.drop("long_slots"), side


def decode_keys(key: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Gene indices (int32, -1 where absent) and type codes (uint8, 0 where absent) per slot, from packed keys."""
    gcols, tcols = [], []
    k = key.astype(np.uint64, copy=False)
    for i in range(MAX_GENES):
        slot = ((k >> np.uint64(SLOT_BITS * (MAX_GENES - 1 - i))) & np.uint64((1 << SLOT_BITS) - 1)).astype(np.int32)
        gcols.append((slot >> 3) - 1)
        tcols.append((slot & 7).astype(np.uint8))
    return gcols, tcols


def _n_genes(key: np.ndarray) -> np.ndarray:
    """Number of present slots per packed key (uint64)."""
    mask = np.uint64((1 << SLOT_BITS) - 1)
    return sum((((key >> np.uint64(SLOT_BITS * i)) & mask) != 0).astype(np.uint64) for i in range(MAX_GENES))


def collect_observations(enc: pl.LazyFrame) -> pl.DataFrame:
    """Stream the encoded observations into memory, narrow: float32 values, int32 rows, screen codes.

    About 50 bytes per observation (1 GiB at 20 million rows); the screen names are
    kept aside as the categorical's categories.
    """
    names = enc.collect_schema().names()
    cast = [pl.col(v).cast(pl.Float32) for v in [*VALUES, *_COMBINED, *extra_labels(names)]]
    df = enc.with_columns(*cast, pl.col("source_row").cast(pl.Int32)).collect(engine="streaming")
    return df.rechunk()  # contiguous columns: to_numpy() without copies


def _sort_key(key: np.ndarray) -> np.ndarray:
    """Canonical order: number of genes, then the packed key; long keys (bit 62: the hash, an
    order among long strains fixed later) after them and unknown-gene keys (top bit) last."""
    return np.where(key >= LONG, key, (_n_genes(key) << np.uint64(58)) | key)


def aggregate(obs: pl.DataFrame, policy: str = "mean") -> pl.DataFrame:
    """One row per strain ``key`` from its replicate observations, in canonical order.

    Sort-based, in numpy: one argsort of the keys, then per column a gather and
    ``reduceat`` over the runs of equal keys, so memory is the observations plus one
    column at a time (a hash group-by with ~20 aggregates holds several times more).

    ``policy="mean"``: each value column ``v`` becomes its mean over replicates,
    ``v_n`` the number of replicates that measured it and ``v_rep_sd`` their
    standard deviation (null below 2). The measurement errors combine as
    ``fitness_std`` = root mean square of the replicates' standard deviations and
    ``interaction_p`` = the largest p-value (conservative). ``policy="first"``
    keeps the first observation (lowest input, then source row) of each strain; a
    dataset's own label (:func:`extra_labels`) comes from the first observation that
    measured it, so no dataset's labels are lost to another's row, and ``source_bits``
    is every replicate's.
    Keys of observations naming unknown genes (``>= UNKNOWN``) come out last, with
    their row counts in ``n_rows``.
    """
    if policy not in ("mean", "first"):
        raise ValueError(f"replicate policy must be 'mean' or 'first', got {policy!r}")
    key = obs["key"].to_numpy()
    sk = _sort_key(key)
    if policy == "first":  # within a strain: lowest input (tag bit), then source row
        order = np.lexsort((obs["source_row"].to_numpy(), obs["source_bits"].to_numpy(), sk))
    else:
        order = np.argsort(sk)
    sk = sk[order]
    starts = np.flatnonzero(np.concatenate([[True], sk[1:] != sk[:-1]])) if len(sk) else np.zeros(0, np.int64)
    run_len = np.empty(len(starts), dtype=np.int64)  # diff of starts and the end, without a copy
    np.subtract(starts[1:], starts[:-1], out=run_len[:-1])
    if len(starts):
        run_len[-1] = len(sk) - starts[-1]
    del sk
    first = order[starts]
    out: dict[str, Any] = {"key": key[first], "n_rows": run_len.astype(np.uint32)}
    del key  # full-size temporaries go as soon as they are used: the peak is in here
    screen = obs["screen"]
    if policy == "first":
        extras = set(extra_labels(obs.columns))
        for c in obs.columns:
            if c in extras:  # another dataset's label: from the first observation that measured it
                out[c] = _first_measured(obs[c].to_numpy(), order, starts)
            elif c == "source_bits":  # every dataset of the replicates (their labels may be kept)
                out[c] = np.bitwise_or.reduceat(obs[c].to_numpy()[order], starts) if len(starts) else out["n_rows"][:0]
            elif c not in ("key", "screen"):
                out[c] = obs[c].to_numpy()[first]
        out["screen"] = screen[pl.Series(first)]
        return pl.DataFrame(out).with_columns(pl.col(c).fill_nan(None) for c in extras)
    del starts

    # Most strains are measured once: their values are copied through; only the rows of
    # replicated strains are gathered and reduced.
    multi = run_len > 1
    in_multi = np.repeat(multi, run_len)
    m_rows = order[in_multi]  # rows of replicated strains, grouped by strain
    del in_multi, order
    m_starts = indptr_from_lengths(run_len[multi])[:-1]
    del run_len
    has_multi = bool(multi.any())

    def reduce(arr: np.ndarray, ufunc: np.ufunc) -> np.ndarray:
        out = arr[first]
        if has_multi:
            out[multi] = ufunc.reduceat(arr[m_rows], m_starts)
        return out

    # each result becomes a polars Series at once (numpy freed): one column in flight at a time
    cols: dict[str, pl.Series] = {k: pl.Series(k, v) for k, v in out.items()}
    del out
    cols["source_bits"] = pl.Series("source_bits", reduce(obs["source_bits"].to_numpy(), np.bitwise_or))
    cols["source_row"] = pl.Series("source_row", reduce(obs["source_row"].to_numpy(), np.minimum))
    # screens by lexical rank, not by categorical code (codes follow arrival order); ranks in
    # the narrowest dtype: this runs over every observation
    names = screen.unique().drop_nulls().sort()
    phys_names = names.to_physical().to_numpy()
    rank = np.uint16 if len(names) < (1 << 16) - 1 else np.uint32
    lut = np.full(int(phys_names.max(initial=0)) + 2, len(names), dtype=rank)
    lut[phys_names] = np.arange(len(names), dtype=rank)
    phys = screen.to_physical()
    best = reduce(lut[(phys.fill_null(len(lut) - 1) if phys.null_count() else phys).to_numpy()], np.minimum)
    del phys
    # rank -> name by one gather from the few names (rank len(names): no screen, null)
    table = pl.concat([names.cast(pl.String), pl.Series([None], dtype=pl.String)])
    cols["screen"] = table.gather(pl.Series(best.astype(np.uint32))).alias("screen")
    del best
    def mean_n_sd(v: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        col = obs[v].to_numpy()
        mean = col[first]  # float32: a gather makes a new array
        n = (~np.isnan(mean)).astype(np.uint16)
        sd = np.full(len(first), np.nan, dtype=np.float32)
        if has_multi:
            x = col[m_rows].astype(np.float64)
            valid = ~np.isnan(x)
            x[~valid] = 0.0
            c = np.add.reduceat(valid.astype(np.uint32), m_starts)
            s1 = np.add.reduceat(x, m_starts)
            s2 = np.add.reduceat(x * x, m_starts)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean[multi] = s1 / c
                var = (s2 - s1 * s1 / c) / (c - 1)
            n[multi] = c
            sd[multi] = np.where(c >= 2, np.sqrt(np.maximum(var, 0.0)), np.nan)
        return mean, n, sd

    # two value columns at a time: numpy's gathers and reductions release the GIL
    # (measured 1.6x on 2 cores), and at most two columns' temporaries are in flight
    values = [*VALUES, *extra_labels(obs.columns)]
    with ThreadPoolExecutor(2) as ex:
        for v, (mean, n, sd) in zip(values, ex.map(mean_n_sd, values)):
            cols[v] = pl.Series(v, mean, nan_to_null=True)
            cols[f"{v}_n"] = pl.Series(f"{v}_n", n)
            cols[f"{v}_rep_sd"] = pl.Series(f"{v}_rep_sd", sd, nan_to_null=True)
            del mean, n, sd
    col = obs["fitness_std"].to_numpy()
    rms = col[first]  # float32
    if has_multi:
        x = col[m_rows].astype(np.float64)
        ok = ~np.isnan(x)
        with np.errstate(invalid="ignore", divide="ignore"):
            rms[multi] = np.sqrt(np.add.reduceat(np.where(ok, x * x, 0.0), m_starts)
                                 / np.add.reduceat(ok.astype(np.uint32), m_starts))
    cols["fitness_std"] = pl.Series("fitness_std", rms, nan_to_null=True)
    p = obs["interaction_p"].to_numpy()
    cols["interaction_p"] = pl.Series("interaction_p", reduce(p, np.fmax).astype(np.float32), nan_to_null=True)
    df = pl.DataFrame(list(cols.values()))
    del cols
    return df


def _first_measured(col: np.ndarray, order: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per run of ``order`` (starting at ``starts``) the first non-NaN value of ``col``, NaN if none.

    >>> _first_measured(np.array([np.nan, 2.0, 3.0, np.nan]), np.arange(4), np.array([0, 2])).tolist()
    [2.0, 3.0]
    """
    vals = col[order]
    pos = np.where(np.isnan(vals), len(vals), np.arange(len(vals)))
    at = np.minimum.reduceat(pos, starts) if len(starts) else np.zeros(0, np.int64)
    return np.append(vals, np.float32(np.nan))[at].astype(col.dtype)


def sample_key(gene_cols: list[np.ndarray], type_cols: list[np.ndarray]) -> np.ndarray:
    """The packed strain key (:func:`pack_keys`) from per-slot gene indices (-1 absent) and type codes;
    the inverse of :func:`decode_keys`."""
    return pack_keys([slot_values(g, t) for g, t in zip(gene_cols, type_cols, strict=True)])


def assign_ids_and_splits(samples: pl.DataFrame, n_genes: int, seed: int,
                          fractions: tuple[float, float, float], sources: list[str] | None = None,
                          long_strains: pl.DataFrame | None = None) -> pl.DataFrame:
    """Sort samples canonically, number them, add ``gene_idx``/``types`` lists and ``split_<name>``.

    Canonical order: by number of perturbed genes, then by the packed key (the strain's
    (gene index, type) pairs, most significant first), so sample ids do not depend on
    input order or on the aggregation's hash order. Strains of more than
    :data:`MAX_GENES` genes (long keys; their slots in ``long_strains``, from
    :func:`split_long`) come after, in the same order: by number of genes, then their
    (gene index, type) pairs.
    """
    key = samples["key"].to_numpy()
    is_long = key >= LONG
    if not is_long.any():
        return _short_samples(samples, n_genes, seed, fractions, sources)
    if long_strains is None:
        raise ValueError("samples with long strain keys need long_strains (split_long)")
    short = _short_samples(samples.filter(pl.Series(~is_long)), n_genes, seed, fractions, sources)
    long = _long_samples(samples.filter(pl.Series(is_long)), long_strains, n_genes, seed, fractions, sources)
    long = long.with_columns(pl.col("sample_id") + short.height)
    return pl.concat([short, long.select(short.columns)], how="vertical")


def _split_labels(key: np.ndarray, gcols: list[np.ndarray], n_genes: int, seed: int,
                  fractions: tuple[float, float, float]) -> dict[str, np.ndarray]:
    labels = {}
    for name, fn in SPLITS.items():
        kwargs = {"n_genes": n_genes} if name == "gene_holdout" else {}
        labels[f"split_{name}"] = fn(key, gcols, seed, fractions, **kwargs)
    return labels


def _with_source(body: pl.DataFrame, sources: list[str] | None) -> pl.DataFrame:
    """``source_bits`` back to names: sorted, comma-joined (one name per distinct bit set, then a
    gather: no Python string per row)."""
    if "source_bits" not in body.columns:
        return body
    names = sources or [f"input{i}" for i in range(16)]
    bits = body["source_bits"].to_numpy().astype(np.int64)
    present = np.flatnonzero(np.bincount(bits, minlength=1))
    code = np.zeros(int(present[-1]) + 1 if len(present) else 1, dtype=np.uint32)
    code[present] = np.arange(len(present), dtype=np.uint32)
    table = pl.Series("source", [",".join(sorted(n for i, n in enumerate(names) if b >> i & 1))
                                 for b in present.tolist()], dtype=pl.String)
    body = body.with_columns(table.gather(pl.Series(code[bits]))).drop("source_bits")
    return body.select("source", pl.exclude("source"))


def _short_samples(samples: pl.DataFrame, n_genes: int, seed: int, fractions: tuple[float, float, float],
                   sources: list[str] | None) -> pl.DataFrame:
    """:func:`assign_ids_and_splits` of samples with packed (up to three-gene) keys."""
    key = samples["key"].to_numpy()
    gcols, tcols = decode_keys(key)
    n = sum((g >= 0).astype(np.uint8) for g in gcols)
    sk = (n.astype(np.uint64) << np.uint64(58)) | key
    identity = bool(np.all(sk[1:] > sk[:-1])) if len(sk) > 1 else True  # aggregate() sorts already
    if not identity:
        order = np.argsort(sk)
        key, n = key[order], n[order]
        gcols, tcols = [g[order] for g in gcols], [t[order] for t in tcols]
    labels = _split_labels(key, gcols, n_genes, seed, fractions)
    # lists from fixed slots: the present slots of a key are its first n (decode_keys), so slot
    # i of sample j goes to offsets[j] + i; scattered slot by slot (no [n, 3] temporaries)
    offsets = indptr_from_lengths(n)
    flat_g = np.empty(int(offsets[-1]), dtype=np.int32)
    flat_t = np.empty(int(offsets[-1]), dtype=np.uint8)
    for i, (g, t) in enumerate(zip(gcols, tcols)):
        has = n > i
        at = offsets[:-1][has] + i
        flat_g[at] = g[has]
        flat_t[at] = t[has]
    gene_idx = _lists("gene_idx", flat_g, offsets, pl.Int32)
    types = _lists("types", flat_t, offsets, pl.UInt8)
    body = _with_source((samples if identity else samples[pl.Series(order)]).drop("key"), sources)
    return pl.DataFrame([pl.Series("sample_id", np.arange(len(key), dtype=np.int64)), gene_idx, types,
                         pl.Series("n_perturbed", n.astype(np.uint8))]).hstack(body).with_columns(
        *[pl.Series(k, v, dtype=pl.UInt8) for k, v in labels.items()])


def _long_samples(samples: pl.DataFrame, long_strains: pl.DataFrame, n_genes: int, seed: int,
                  fractions: tuple[float, float, float], sources: list[str] | None) -> pl.DataFrame:
    """:func:`assign_ids_and_splits` of samples with long keys (few: engineered strains), their
    slots looked up in ``long_strains`` (key, long_slots)."""
    slots = samples.select("key").join(long_strains, on="key", how="left", maintain_order="left")["long_slots"]
    if slots.null_count():
        raise ValueError("a long strain key without its slots in long_strains")
    n = slots.list.len().to_numpy().astype(np.int64)
    if n.max(initial=0) > MAX_STRAIN_GENES:
        raise ValueError(f"a strain of {int(n.max())} genes; at most {MAX_STRAIN_GENES} are stored")
    width = int(n.max(initial=0))
    offsets = indptr_from_lengths(n)
    flat = slots.explode().to_numpy().astype(np.int64)
    mat = np.zeros((len(n), width), dtype=np.int64)  # slots, 0 past a strain's genes
    mat[owner(offsets), np.arange(len(flat)) - offsets[:-1][owner(offsets)]] = flat
    order = np.lexsort((*[mat[:, j] for j in range(width - 1, -1, -1)], n))  # by n, then the slots
    mat, n = mat[order], n[order]
    key = samples["key"].to_numpy()[order]
    gcols = [np.where(mat[:, j] > 0, (mat[:, j] >> 3) - 1, -1).astype(np.int32) for j in range(width)]
    labels = _split_labels(key, gcols, n_genes, seed, fractions)
    offsets = indptr_from_lengths(n)
    present = mat[np.arange(width)[None, :] < n[:, None]]  # row-major: each strain's slots in order
    gene_idx = _lists("gene_idx", ((present >> 3) - 1).astype(np.int32), offsets, pl.Int32)
    types = _lists("types", (present & 7).astype(np.uint8), offsets, pl.UInt8)
    body = _with_source(samples[pl.Series(order)].drop("key"), sources)
    return pl.DataFrame([pl.Series("sample_id", np.arange(len(key), dtype=np.int64)), gene_idx, types,
                         pl.Series("n_perturbed", n.astype(np.uint8))]).hstack(body).with_columns(
        *[pl.Series(k, v, dtype=pl.UInt8) for k, v in labels.items()])


def _lists(name: str, flat: np.ndarray, offsets: np.ndarray, dtype: pl.DataType) -> pl.Series:
    """A list Series from a flat array and offsets, without a Python loop."""
    # Arrow arrays over the numpy buffers (no copy; pa.array would also import pandas: 0.2 s)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    flat = np.ascontiguousarray(flat)
    offs = pa.Array.from_buffers(pa.int64(), len(offsets), [None, pa.py_buffer(offsets)])
    vals = pa.Array.from_buffers(pa.from_numpy_dtype(flat.dtype), len(flat), [None, pa.py_buffer(flat)])
    arr = pa.LargeListArray.from_arrays(offs, vals)
    return pl.Series(name, arr).cast(pl.List(dtype))
