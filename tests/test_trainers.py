"""The reference trainers (``trainers/``) on a tiny SYNTHETIC planted build (``synth.planted``: 120 genes,
1,200 Kuzmin-format gene sets, one added gene GFP): the model contract, the research-code entry
points, the planned transformer, metrics, checkpoints and resume."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.stream import PerturbationStream
from pipeline.stream.batches import AdjRows, owner
from synth.planted import Planted, build_planted
from trainers.metrics import Accumulator, collapse, pearson, spearman
from trainers.models import MODELS, graph_reg_loss
from trainers.models.common import ABSENT, N_STATES
from trainers.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"index": {"d": 16}, "lazy": {"d": 16}, "khop": {"d": 16}, "transformer": {"d": 16, "heads": 4}}


_BUILT: dict[str, Path] = {}  # the other test_trainers_* files import the fixture: build once per session


@pytest.fixture(scope="session")
def planted(tmp_path_factory) -> Path:
    """The planted build (~3-6 s): graph string12, dataset kuzmin2018, masks, k = 1, 2 sets, adjacency rows."""
    if "build" not in _BUILT:
        tmp = tmp_path_factory.mktemp("planted")
        added = tmp / "added.tsv"
        added.write_text("id\tname\nGFP\tgfp\n")
        _BUILT["build"] = build_planted(tmp / "raw", tmp / "out",
                                        Planted(n_genes=120, pairs=500, digenic=900, trigenic=300), added_genes=added)
    return _BUILT["build"]


def _stream(build: Path, name: str, **kw) -> PerturbationStream:
    return PerturbationStream(build, fmt=MODELS[name].stream_format, **kw)


def _model(ds: PerturbationStream, name: str, **hp):
    torch.manual_seed(0)
    return MODELS[name](ds.static(), len(ds.labels), **{**SMALL[name], **hp})


@pytest.mark.parametrize("name", list(MODELS))
def test_models_read_their_format_and_ignore_padded_samples(planted, name):
    ds = _stream(planted, name, split="val", batch_size=64, shuffle=False)  # 120 val samples: the 2nd batch pads
    batch = list(ds)[-1]
    assert batch.pad.any() and not batch.pad.all()
    model = _model(ds, name)
    out = model.loss(batch)
    assert out["pred"].shape == (len(batch), 2) and torch.isfinite(out["pred"]).all()
    assert {"loss", "label"} <= set(out) and out["loss"].shape == () and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    batch.y[batch.pad] += 100.0  # a padded repeat's labels count nothing
    assert float(model.loss(batch)["label"].detach()) == pytest.approx(float(out["label"].detach()), rel=1e-6)
    emb = model.gene_embeddings()
    assert emb.ndim == 2 and emb.shape[0] == int(ds.static().valid.sum())


def _state(batch, n_genes: int) -> torch.Tensor:
    s = torch.zeros(len(batch), n_genes, dtype=torch.long)
    s[owner(batch.pert_ptr), batch.pert_genes] = batch.pert_types
    return s


def test_lazy_forward_hetero_equals_the_stream_path(planted):
    """Research-code loading: one full-graph HeteroData per sample, Batch.from_data_list."""
    from torch_geometric.data import Batch, HeteroData

    ds = _stream(planted, "lazy", split="train", batch_size=8)
    st = ds.static()
    batch = next(iter(ds))
    model = _model(ds, "lazy").eval()
    masks, states = batch.node_mask(st), _state(batch, st.n_genes)
    per = []
    for b in range(len(batch)):
        d = HeteroData()
        d["gene"].x = st.gene_x
        d["gene"].node_mask = masks[b]
        d["gene"].pert_state = states[b]
        for t, ei in st.edge_index.items():
            d["gene", t, "gene"].edge_index = ei
        per.append(d)
    with torch.no_grad():
        got = model.forward_hetero(Batch.from_data_list(per))
        want = model(batch)
    assert (~masks).any() and torch.allclose(got, want, atol=1e-5)


def test_khop_forward_hetero_equals_the_stream_path(planted):
    """Research-code loading: per sample k_hop_subgraph over the union of edge types (k = 1), the
    induced edges per type relabelled, Batch.from_data_list."""
    from torch_geometric.data import Batch, HeteroData
    from torch_geometric.utils import k_hop_subgraph, subgraph

    ds = _stream(planted, "khop", split="train", batch_size=8, k=1)
    st = ds.static()
    batch = next(iter(ds))
    model = _model(ds, "khop").eval()
    union = torch.cat(list(st.edge_index.values()), dim=1)
    per = []
    for b in range(len(batch)):
        genes = batch.pert_genes[batch.pert_ptr[b]:batch.pert_ptr[b + 1]]
        subset, *_ = k_hop_subgraph(genes, 1, union, num_nodes=st.n_genes)
        d = HeteroData()
        d["gene"].n_id = subset
        d["gene"].x = st.gene_x[subset]
        state = torch.zeros(st.n_genes, dtype=torch.long)
        state[genes] = batch.pert_types[batch.pert_ptr[b]:batch.pert_ptr[b + 1]]
        d["gene"].pert_type = state[subset]  # the research loader's name (pert_state also read)
        for t, ei in st.edge_index.items():
            d["gene", t, "gene"].edge_index = subgraph(subset, ei, relabel_nodes=True, num_nodes=st.n_genes)[0]
        per.append(d)
    with torch.no_grad():
        got = model.forward_hetero(Batch.from_data_list(per))
        want = model(batch)
    assert torch.allclose(got, want, atol=1e-5)


def test_transformer_runs_the_encoder_once_per_step_and_z_is_the_formula(planted):
    ds = _stream(planted, "transformer", split="train", batch_size=32)
    batch = next(iter(ds))
    model = _model(ds, "transformer").eval()
    calls = []
    model.blocks[0].register_forward_hook(lambda *a: calls.append(1))
    out = model.loss(batch)
    assert len(calls) == 1 and len(batch) == 32  # one encoder pass for 32 samples
    assert set(out) == {"loss", "label", "pred", *(f"graph/{g}" for g in ds.adjacency_graphs)}
    # z_S by the formula, naively: phi of every gene in its state, softmax(q_S^T W h_i) weights
    with torch.no_grad():
        h, _ = model.encode()
        hc, hg = h[0], h[1:]
        st = ds.static()
        state = torch.where(st.base, 0, ABSENT).repeat(len(batch), 1)
        state[owner(batch.pert_ptr), batch.pert_genes] = batch.pert_types
        want = []
        for b in range(len(batch)):
            genes = batch.pert_genes[batch.pert_ptr[b]:batch.pert_ptr[b + 1]]
            q = hg[genes].mean(0)
            beta = torch.softmax(model.w(hg) @ q / math.sqrt(hg.shape[1]), 0)
            phi = model.phi(torch.cat([hg, torch.nn.functional.one_hot(state[b], N_STATES).float()], 1))
            want.append(model.head(torch.cat([hc, beta @ phi])))
        assert torch.allclose(model.predict(h, batch), torch.stack(want), atol=1e-5)


def test_graph_reg_loss_validity_mask_drops_added_genes():
    torch.manual_seed(0)
    q, k = torch.randn(1, 6, 4), torch.randn(1, 6, 4)  # CLS + 5 genes, gene 4 added (invalid)
    keys = torch.tensor([True, True, True, True, True, False])
    adj = AdjRows(torch.tensor([0, 1]), torch.tensor([0, 2, 4]), torch.tensor([1, 4, 0, 2]),
                  torch.tensor([0.5, 0.5, 0.5, 0.5]), torch.tensor([True, True, True, True]))
    base = graph_reg_loss(q, k, adj, keys)
    k2 = k.clone()
    k2[0, 5] += 10.0  # the added gene's key: masked out of every softmax and every entry
    assert float(graph_reg_loss(q, k2, adj, keys)) == pytest.approx(float(base), rel=1e-6)
    # naive: softmax over the valid keys, KL over the entries with valid columns
    lp = torch.log_softmax((q[0] @ k[0].T / 2.0).masked_fill(~keys, float("-inf")), -1)
    naive = (0.5 * (math.log(0.5) - lp[1, 2]) + 0.5 * (math.log(0.5) - lp[2, 1]) + 0.5 * (math.log(0.5) - lp[2, 3])) / 2
    assert float(base) == pytest.approx(float(naive), rel=1e-5)


def test_transformer_hard_mask_attends_along_the_graph_only(planted):
    ds = _stream(planted, "transformer", split="train", batch_size=16)
    batch = next(iter(ds))
    model = _model(ds, "transformer", hard_mask=True, layers=2)
    st = ds.static()
    g, (layer, head) = list(model.reg_heads.items())[-1]  # 6 graphs on 2 x 4 heads: layer 1 has free heads
    free = set(range(model.heads)) - {h for lay, h in model.reg_heads.values() if lay == layer}
    m = getattr(model, f"hard_{g}")
    ptr, cols = st.adj_ptr[g], st.adj_cols[g]
    i = int(torch.argmax(ptr.diff()))
    nbrs = set(cols[ptr[i]:ptr[i + 1]].tolist())
    allowed = set((m[i + 1].nonzero().flatten() - 1).tolist())
    assert allowed == nbrs | {i, -1} | {j for j in range(st.n_genes) if i in set(cols[ptr[j]:ptr[j + 1]].tolist())}
    assert torch.equal(m, m.T) and bool(m[0].all())
    mask = model._layer_mask(layer)
    assert mask is not None and torch.equal(mask[0, head], m)
    assert free and all(bool(mask[0, h].all()) for h in free)  # the other heads stay unmasked
    out = model.loss(batch)
    assert torch.isfinite(out["loss"]) and float(out[f"graph/{g}"]) >= 0


def test_metrics_correlations_and_padding():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    assert pearson(a, b) == pytest.approx(float(np.corrcoef(a, b)[0, 1]))
    import pandas as pd
    ties = np.round(a, 0)  # average ranks for ties (pandas' rank(method="average")), then Pearson
    ra, rb = pd.Series(ties).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    assert spearman(ties, b) == pytest.approx(float(np.corrcoef(ra, rb)[0, 1]))

    class _B:  # a batch of 3 samples, the last a padding repeat
        valid = torch.tensor([True, True, False])
        pad = ~valid
        y = torch.tensor([[1.0, 0.0], [2.0, 1.0], [9.0, 9.0]])
        y_mask = torch.tensor([[True, False], [True, True], [True, True]])

    acc = Accumulator(("fitness", "interaction"))
    acc.add(torch.tensor([[1.0, 5.0], [2.0, 5.0], [-100.0, -100.0]]), _B(), 0.5)
    m = acc.metrics("val")
    assert m["val/fitness/n"] == 2 and m["val/gene_interaction/n"] == 1 and m["val/fitness/MSE"] == 0.0
    assert m["val/fitness/Pearson"] == pytest.approx(1.0) and m["val/loss"] == 0.5
    e = torch.randn(64, 8)
    spread, shifted = collapse(e), collapse(e + 10.0 * torch.ones(8))  # centred: a common shift is no collapse
    assert spread["collapse/cosine_distance"] == pytest.approx(shifted["collapse/cosine_distance"], abs=1e-4)


def _cfg(build: Path, out: Path, **kw) -> TrainConfig:
    base = dict(build=str(build), model="transformer", epochs=2, batch_size=64, lr=3e-3, workers=0,
                out=str(out), hparams=SMALL["transformer"], threads=1)
    return TrainConfig(**{**base, **kw})


def test_resume_continues_with_the_same_batches_and_losses(planted, tmp_path):
    straight = train(_cfg(planted, tmp_path / "a", record_batches=True))
    n = straight["steps"]
    assert n == 2 * len(_stream(planted, "transformer", batch_size=64)) and n >= 20
    first = train(_cfg(planted, tmp_path / "b", max_steps=n // 2 - 3, record_batches=True))  # stops mid-epoch 0
    rest = train(_cfg(planted, tmp_path / "b", resume=True, record_batches=True))
    assert first["steps"] == n // 2 - 3 and rest["steps"] == n
    assert first["losses"] + rest["losses"] == straight["losses"]  # bit-identical on the CPU
    ids = [json.loads(x)["ids"] for x in (tmp_path / "a" / "batches-rank0.jsonl").read_text().splitlines()]
    ids_b = [json.loads(x)["ids"] for x in (tmp_path / "b" / "batches-rank0.jsonl").read_text().splitlines()]
    assert ids == ids_b
    rec = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rec] == [0, 1]
    for key in ("train/gene_interaction/Pearson", "val/gene_interaction/Pearson", "train/fitness/Spearman",
                "val/fitness/Pearson", "val/loss", "collapse/effective_rank", "collapse/cosine_distance"):
        assert key in rec[-1], key
    assert list((tmp_path / "a" / "tb").glob("events.out.tfevents.*"))
    ck = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)  # tensors and plain containers only
    assert ck["stream"] == {"epoch": 2, "start": 0, "seed": 0, "world_size": 1, "batch_size": 64}


@pytest.mark.slow
def test_command_line_with_workers_then_resume(planted, tmp_path):
    """``python -m trainers`` with 2 DataLoader workers, stopped after 5 steps; resumed in-process (2
    workers): the same per-step losses as one straight run without workers."""
    straight = train(_cfg(planted, tmp_path / "a", model="index", hparams=SMALL["index"], epochs=1))
    out = tmp_path / "cli"
    args = [sys.executable, "-m", "trainers", "--build", str(planted), "--model", "index", "--epochs", "1",
            "--batch-size", "64", "--lr", "3e-3", "--workers", "2", "--out", str(out), "--hp", "d=16",
            "--device", "cpu", "--threads", "1", "--max-steps", "5"]
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)}
    subprocess.run(args, check=True, cwd=ROOT, env=env, capture_output=True, timeout=120)
    assert json.loads((out / "config.json").read_text())["hparams"] == {"d": 16}
    rest = train(_cfg(planted, out, model="index", hparams=SMALL["index"], epochs=1, workers=2, resume=True))
    losses = [json.loads(x)["loss"] for x in (out / "steps.jsonl").read_text().splitlines()]
    assert len(losses) == rest["steps"] == straight["steps"] and losses == straight["losses"]
