"""The dataset core: encoding over the gene index, replicate aggregation, ids and splits, the store."""

import numpy as np
import polars as pl
import pytest

from pipeline.core.errors import StoreError
from pipeline.core.genes import GeneIndex, conform
from pipeline.dataset.encode import (
    UNKNOWN,
    aggregate,
    assign_ids_and_splits,
    collect_observations,
    decode_keys,
    encode,
    pack_keys,
    sample_key,
    slot_values,
)
from pipeline.dataset.splits.gene_holdout import held_out_genes
from pipeline.dataset.store import open_dataset, write_dataset

IDS = [f"Y{i:04d}W" for i in range(200)]


def observations(n=3000, seed=0, unknown=True) -> pl.LazyFrame:
    rng = np.random.default_rng(seed)
    k = rng.integers(2, 4, n)
    genes, types = [], []
    for m in k:
        g = sorted(rng.choice(len(IDS), m, replace=False).tolist())
        genes.append([IDS[i] for i in g])
        types.append([1] * m)
    if unknown:
        genes[5] = ["Y0001W", "YNOTREAL"]
        types[5] = [1, 1]
    genes[7], types[7] = list(genes[6]), list(types[6])  # a replicate
    genes[8], types[8] = list(genes[6]), [2] * len(genes[6])  # same genes, other allele: another strain
    return pl.LazyFrame({
        "source": ["kuzmin2018"] * n, "source_file": ["f.tsv"] * n, "source_row": np.arange(1, n + 1),
        "screen": [None] * n, "genes": genes, "types": types,
        "fitness": rng.random(n), "fitness_std": rng.random(n) / 10, "interaction": rng.normal(0, 0.1, n),
        "interaction_raw": rng.normal(0, 0.1, n), "interaction_p": rng.random(n),
        "smf_query": rng.random(n), "smf_array": rng.random(n), "n_perturbed": k,
    }, schema_overrides={"types": pl.List(pl.UInt8), "n_perturbed": pl.UInt8})


def gene_index():
    return GeneIndex.from_table(conform(pl.DataFrame({"id": IDS})))


def build(obs, policy="mean", seed=0):
    enc = encode(obs, gene_index())
    agg = aggregate(collect_observations(enc), policy)
    return assign_ids_and_splits(agg.filter(pl.col("key") < int(UNKNOWN)), len(IDS), seed, (0.8, 0.1, 0.1),
                                 sources=["kuzmin2018"])


def test_encode_packs_strains_and_tags_unknown_genes():
    obs = observations()
    enc = encode(obs, gene_index(), tag=7).collect()
    raw = obs.collect()
    assert enc.height == raw.height and enc["source_row"].to_list() == raw["source_row"].to_list()
    assert (enc["key"] >= int(UNKNOWN)).sum() == 1 and enc["key"][5] == int(UNKNOWN) + 7
    gcols, tcols = decode_keys(enc["key"].to_numpy())
    for r in (0, 1, 8):
        want = sorted(zip((IDS.index(g) for g in raw["genes"][r]), raw["types"][r], strict=True))
        got = [(int(g[r]), int(t[r])) for g, t in zip(gcols, tcols, strict=True) if g[r] >= 0]
        assert got == want


def test_one_packer_sorts_slots_and_decode_keys_inverts_it():
    """pack_keys: slots sorted ascending, absent last, whatever column they come in; decode_keys inverts."""
    rng = np.random.default_rng(1)
    n = 500
    g = [np.where(rng.random(n) < 0.3, -1, rng.integers(0, 65534, n)) for _ in range(3)]
    t = [rng.integers(0, 8, n).astype(np.uint8) for _ in range(3)]
    key = sample_key(g, t)
    want = [sorted((int(gi[r]), int(ti[r])) for gi, ti in zip(g, t, strict=True) if gi[r] >= 0) for r in range(n)]
    gcols, tcols = decode_keys(key)
    got = [[(int(gc[r]), int(tc[r])) for gc, tc in zip(gcols, tcols, strict=True) if gc[r] >= 0] for r in range(n)]
    assert got == want
    assert np.array_equal(sample_key(gcols, tcols), key)  # canonical slots pack to the same key
    assert np.array_equal(pack_keys([slot_values(x, y) for x, y in zip(g[::-1], t[::-1], strict=True)]), key)
    assert int(pack_keys([np.array([26], np.uint32)])[0]) == 26 << 38


def test_replicates_merge_by_genes_and_types():
    obs = observations()
    df = build(obs)
    raw = obs.collect()
    n_distinct = raw.filter(pl.arange(0, raw.height) != 5).select(pl.struct("genes", "types").n_unique()).item()
    assert df.height == n_distinct
    rep = df.filter(pl.col("n_rows") == 2)
    assert rep.height >= 1
    g6 = sorted(IDS.index(g) for g in raw["genes"][6].to_list())
    row = df.filter(pl.col("gene_idx") == g6).filter(pl.col("types").list.first() == 1)
    assert row["n_rows"].item() == 2 and row["fitness_n"].item() == 2
    want = raw["fitness"][6:8].mean()
    assert row["fitness"].item() == pytest.approx(want, rel=1e-6)
    assert row["fitness_rep_sd"].item() == pytest.approx(raw["fitness"][6:8].std(), rel=1e-5)
    assert row["interaction_p"].item() == pytest.approx(raw["interaction_p"][6:8].max(), rel=1e-6)
    other = df.filter(pl.col("gene_idx") == g6).filter(pl.col("types").list.first() == 2)
    assert other.height == 1  # another allele is another strain
    first = build(obs, policy="first")
    r = first.filter(pl.col("gene_idx") == g6).filter(pl.col("types").list.first() == 1)
    assert r["fitness"].item() == pytest.approx(raw["fitness"][6]) and r["source_row"].item() == 7


def test_ids_and_splits_are_deterministic_and_order_free():
    obs = observations()
    a = build(obs)
    shuffled = obs.collect().sample(fraction=1.0, shuffle=True, seed=3).lazy()
    b = build(shuffled)
    assert a.select("sample_id", "gene_idx", "types", "split_random", "split_gene_holdout").equals(
        b.select("sample_id", "gene_idx", "types", "split_random", "split_gene_holdout"))
    c = build(obs, seed=1)
    assert not np.array_equal(a["split_random"].to_numpy(), c["split_random"].to_numpy())
    fr = a["split_random"].value_counts(normalize=True).sort("split_random")["proportion"].to_list()
    assert fr == pytest.approx([0.8, 0.1, 0.1], abs=0.03)
    assert a["sample_id"].to_list() == list(range(a.height))


def test_gene_holdout_has_no_held_out_gene_outside_test():
    df = build(observations())
    held = held_out_genes(len(IDS), 0, 0.1)
    touches = df["gene_idx"].map_elements(lambda g: bool(held[g.to_numpy()].any()), return_dtype=pl.Boolean)
    assert ((df["split_gene_holdout"] == 2) == touches).all()  # test is exactly the held-out samples
    assert 0 < touches.sum() < df.height


def test_store_round_trip_and_incomplete_store(tmp_path):
    df = build(observations())
    path = write_dataset(tmp_path / "dataset", df, gene_index(), {"build_key": "k"})
    ds = open_dataset(path)
    assert ds.manifest["n_samples"] == df.height and ds.fingerprint == gene_index().fingerprint
    assert ds.gene_ids.tolist() == IDS
    assert ds.read().equals(df)
    assert ds.read("test", "gene_holdout").height == int((df["split_gene_holdout"] == 2).sum())
    (path / "manifest.json").unlink()
    with pytest.raises(StoreError, match="no manifest.json"):
        open_dataset(path)


def test_screen_of_replicates_is_the_lexically_smallest_whatever_the_order():
    base = observations(n=50).collect()
    base = base.with_columns(pl.Series("screen", ["TSA30" if i % 2 else "DMA26" for i in range(50)]))
    base = base.with_columns(pl.when(pl.int_range(pl.len()) == 7).then(pl.lit("ZZZ")).otherwise("screen")
                             .alias("screen"))  # the replicate of row 6 in another screen
    for seed in (1, 2):
        df = build(base.sample(fraction=1.0, shuffle=True, seed=seed).lazy())
        g6 = sorted(IDS.index(g) for g in base["genes"][6].to_list())
        row = df.filter(pl.col("gene_idx") == g6).filter(pl.col("types").list.first() == 1)
        assert row["screen"].item() == "DMA26"
