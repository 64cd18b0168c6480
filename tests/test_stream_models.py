"""The reference consumers (``trainers.models``) on small synthetic tensors built here.

N = 50 genes (the last 2 are added, heterologous: invalid, no edges), 2 edge types (``ppi``
undirected stored both ways, ``reg`` directed), d = 8 with some NaN features, B = 16 samples
of 2-3 perturbed genes. Masks and adjacency rows are computed naively, per the contract.
"""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.stream.batches import AdjRows
from trainers.models import GraphRegularisedTransformer, MaskedGNN, graph_reg_loss, masked_mse

N, N_ADDED, D, B, L = 50, 2, 8, 16, 2
REMOVING, ADDING = (1, 2, 3, 6), (4, 5)


def _data(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    n_real = N - N_ADDED
    valid = torch.arange(N) < n_real
    gene_x = torch.randn(N, D, generator=g)
    gene_x[torch.rand(N, D, generator=g) < 0.1] = float("nan")
    # undirected ppi (both orientations) and directed reg, among genome genes only, no self-loops
    pairs = {tuple(sorted(p)) for p in torch.randint(0, n_real, (120, 2), generator=g).tolist() if p[0] != p[1]}
    und = torch.tensor(sorted(pairs)).T
    reg = torch.tensor(sorted({tuple(p) for p in torch.randint(0, n_real, (80, 2), generator=g).tolist()
                               if p[0] != p[1]})).T
    edge_index = {"ppi": torch.cat([und, und.flip(0)], dim=1), "reg": reg}

    ptr, genes, types = [0], [], []
    for b in range(B):
        k = 2 + b % 2
        chosen = torch.randperm(n_real, generator=g)[:k].tolist()
        ty = torch.randint(1, 7, (k,), generator=g).tolist()
        if b % 4 == 0:  # some samples add a heterologous gene
            chosen[-1], ty[-1] = n_real + b % N_ADDED, 5
        order = sorted(range(k), key=lambda i: chosen[i])
        genes += [chosen[i] for i in order]
        types += [ty[i] for i in order]
        ptr.append(len(genes))
    pert_ptr, pert_genes, pert_types = torch.tensor(ptr), torch.tensor(genes), torch.tensor(types)

    # naive masks: base = valid; removing types remove genome genes, adding types switch on added genes
    node_mask = valid.unsqueeze(0).repeat(B, 1)
    for b in range(B):
        for gene, ty in zip(genes[ptr[b]:ptr[b + 1]], types[ptr[b]:ptr[b + 1]], strict=True):
            if valid[gene] and ty in REMOVING:
                node_mask[b, gene] = False
            elif not valid[gene] and ty in ADDING:
                node_mask[b, gene] = True
    removed = valid.unsqueeze(0) & ~node_mask
    edge_masks = {t: ~(removed[:, ei[0]] | removed[:, ei[1]]) for t, ei in edge_index.items()}

    y = torch.randn(B, L, generator=g)
    y_mask = torch.rand(B, L, generator=g) > 0.2
    return dict(gene_x=gene_x, valid=valid, edge_index=edge_index, pert_ptr=pert_ptr, pert_genes=pert_genes,
                pert_types=pert_types, node_mask=node_mask, edge_masks=edge_masks, y=y, y_mask=y_mask,
                adj={t: _adj_rows(ei, seed + i) for i, (t, ei) in enumerate(edge_index.items())})


def _adj_rows(ei: torch.Tensor, seed: int, n_rows: int = 8, n_neg: int = 3) -> AdjRows:
    """Rows of A (row i = out-neighbours of i) by hand: positives t = 1/(deg+eps), then negatives t = 0; one pad."""
    g = torch.Generator().manual_seed(100 + seed)
    nbrs = {i: sorted(set(ei[1, ei[0] == i].tolist())) for i in range(N)}
    cand = [i for i in range(N) if nbrs[i]]
    rows = [cand[j] for j in torch.randperm(len(cand), generator=g)[:n_rows].tolist()] + [-1]
    ptr, cols, target, pos = [0], [], [], []
    for r in rows:
        if r >= 0:
            neg = [j for j in torch.randperm(N - N_ADDED, generator=g).tolist()  # added genes: never targets
                   if j != r and j not in nbrs[r]][:n_neg]
            cols += nbrs[r] + neg
            target += [1.0 / (len(nbrs[r]) + 1e-8)] * len(nbrs[r]) + [0.0] * len(neg)
            pos += [True] * len(nbrs[r]) + [False] * len(neg)
        ptr.append(len(cols))
    return AdjRows(torch.tensor(rows), torch.tensor(ptr), torch.tensor(cols), torch.tensor(target), torch.tensor(pos))


@pytest.fixture(scope="module")
def data() -> dict:
    return _data()


def _transformer(**kw) -> GraphRegularisedTransformer:
    return GraphRegularisedTransformer(N, D, d_model=32, n_heads=4, n_layers=2, n_labels=L,
                                       reg_heads={"ppi": (0, 1), "reg": (1, 2)}, **kw)


def _tf_call(model, d, adj=True):
    return model(d["gene_x"], d["pert_ptr"], d["pert_genes"], d["pert_types"], d["adj"] if adj else None)


def _gnn_call(model, d, **over):
    d = {**d, **over}
    return model(d["gene_x"], d["edge_index"], d["node_mask"], d["edge_masks"], d["pert_ptr"], d["pert_genes"])


def _train(step, params, steps: int, lr: float = 1e-2) -> list:
    opt = torch.optim.Adam(params, lr=lr)
    out = []
    for _ in range(steps):
        opt.zero_grad()
        loss, parts = step()
        loss.backward()
        opt.step()
        out.append(parts)
    return out


def test_adjacency_rows_follow_the_contract(data):
    for adj in data["adj"].values():
        real = adj.rows >= 0
        sums = torch.zeros(len(adj.rows)).index_add_(
            0, torch.repeat_interleave(torch.arange(len(adj.rows)), adj.row_ptr.diff()), adj.target)
        assert torch.allclose(sums[real], torch.ones(int(real.sum())), atol=1e-5) and (sums[~real] == 0).all()
        assert (adj.target[~adj.positive] == 0).all() and (adj.cols < N - N_ADDED).all()


def test_outputs_are_finite_with_the_right_shape(data):
    torch.manual_seed(0)
    pred, reg = _tf_call(_transformer(), data)
    assert pred.shape == (B, L) and torch.isfinite(pred).all() and reg.shape == () and torch.isfinite(reg) and reg > 0
    pred, reg = _tf_call(_transformer(), data, adj=False)
    assert torch.isfinite(pred).all() and float(reg) == 0.0
    gnn = MaskedGNN(N, D, list(data["edge_index"]), d_hidden=16, n_labels=L)
    out = _gnn_call(gnn, data)
    assert out.shape == (B, L) and torch.isfinite(out).all()


def test_transformer_trains_label_and_graph_losses_fall(data):
    torch.manual_seed(0)
    model = _transformer()

    def step():
        pred, reg = _tf_call(model, data)
        mse = masked_mse(pred, data["y"], data["y_mask"])
        return mse + reg, (mse.item(), reg.item())

    parts = _train(step, model.parameters(), steps=40)
    assert parts[-1][0] < 0.5 * parts[0][0], parts[::10]
    assert parts[-1][1] < 0.8 * parts[0][1], parts[::10]


def test_gnn_trains(data):
    torch.manual_seed(0)
    model = MaskedGNN(N, D, list(data["edge_index"]), d_hidden=16, n_labels=L)

    def step():
        mse = masked_mse(_gnn_call(model, data), data["y"], data["y_mask"])
        return mse, mse.item()

    losses = _train(step, model.parameters(), steps=60)
    assert all(math.isfinite(x) for x in losses) and losses[-1] < 0.5 * losses[0], losses[::10]


def test_masked_mse_ignores_unmeasured_labels():
    pred, y = torch.zeros(2, 2), torch.tensor([[1.0, 100.0], [2.0, float("nan")]])
    mask = torch.tensor([[True, False], [True, False]])
    assert float(masked_mse(pred, y.nan_to_num(), mask)) == pytest.approx(2.5)


def _naive_reg_loss(q, k, adj):
    """Full softmax(QK^T/sqrt(dh)) then KL over each real row's listed columns, averaged over rows and batch."""
    a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
    total, n = torch.zeros(q.shape[0]), 0
    for r in range(len(adj.rows)):
        if adj.rows[r] < 0:
            continue
        n += 1
        s, e = adj.row_ptr[r], adj.row_ptr[r + 1]
        for c, t in zip(adj.cols[s:e].tolist(), adj.target[s:e].tolist(), strict=True):
            if t > 0:
                total += t * (math.log(t) - torch.log(a[:, adj.rows[r] + 1, c + 1] + 1e-8))
    return (total / n).mean()


def test_graph_reg_loss_matches_the_naive_kl_and_ignores_padding(data):
    torch.manual_seed(0)
    q, k = torch.randn(3, N + 1, 4), torch.randn(3, N + 1, 4)
    adj = data["adj"]["ppi"]
    got = graph_reg_loss(q, k, adj)
    assert float(got) == pytest.approx(float(_naive_reg_loss(q, k, adj)), rel=1e-4)
    # an extra -1 row, even one carrying entries, changes nothing
    padded = AdjRows(torch.cat([adj.rows, torch.tensor([-1])]),
                     torch.cat([adj.row_ptr, adj.row_ptr[-1:] + 2]),
                     torch.cat([adj.cols, torch.tensor([0, 1])]), torch.cat([adj.target, torch.tensor([0.5, 0.5])]),
                     torch.cat([adj.positive, torch.tensor([True, True])]))
    assert float(graph_reg_loss(q, k, padded)) == pytest.approx(float(got), rel=1e-6)
    only_pad = AdjRows(torch.tensor([-1]), torch.tensor([0, 0]), torch.zeros(0, dtype=torch.long),
                       torch.zeros(0), torch.zeros(0, dtype=torch.bool))
    assert float(graph_reg_loss(q, k, only_pad)) == 0.0


def test_graph_reg_loss_is_zero_when_attention_equals_the_target():
    # row gene 0: positives genes 1, 2 (t = 0.5 each), negative gene 3; tokens: CLS + 4 genes
    big = 60.0
    q = torch.ones(2, 5, 1)
    k = torch.zeros(2, 5, 1)
    k[:, 2, 0] = k[:, 3, 0] = big  # genes 1 and 2 get all of row 0's attention, equally
    adj = AdjRows(torch.tensor([-1, 0, -1]), torch.tensor([0, 0, 3, 3]), torch.tensor([1, 2, 3]),
                  torch.tensor([0.5, 0.5, 0.0]), torch.tensor([True, True, False]))
    assert float(graph_reg_loss(q, k, adj)) < 1e-6
    k[:, 4, 0] = big  # attention leaking onto the negative raises the loss to log(3/2)
    assert float(graph_reg_loss(q, k, adj)) == pytest.approx(math.log(1.5), rel=1e-4)


def test_gnn_removed_edges_carry_nothing_and_removed_nodes_are_zero(data):
    torch.manual_seed(0)
    model = MaskedGNN(N, D, list(data["edge_index"]), d_hidden=16, n_labels=L).eval()
    with torch.no_grad():
        h = model.embed(data["gene_x"], data["edge_index"], data["node_mask"], data["edge_masks"])
        assert (h[~data["node_mask"]] == 0).all() and (h[data["node_mask"]] != 0).any()
        # per sample: deleting the sample's masked-out edges from the graph gives the identical output
        base = _gnn_call(model, data)
        ptr = data["pert_ptr"]
        for b in range(B):
            ei = {t: data["edge_index"][t][:, m[b]] for t, m in data["edge_masks"].items()}
            one = dict(node_mask=data["node_mask"][b:b + 1], pert_ptr=ptr[b:b + 2] - ptr[b],
                       pert_genes=data["pert_genes"][int(ptr[b]):int(ptr[b + 1])])
            masked = _gnn_call(model, data, edge_masks={t: m[b:b + 1] for t, m in data["edge_masks"].items()}, **one)
            deleted = _gnn_call(model, data, edge_index=ei, edge_masks={t: m[b:b + 1, m[b]] for t, m in
                                                                        data["edge_masks"].items()}, **one)
            assert torch.allclose(masked, deleted, atol=1e-6) and torch.allclose(masked[0], base[b], atol=1e-5)
        assert sum(int((~m).sum()) for m in data["edge_masks"].values()) > 0
        # a removed gene's features do not reach the other genes' embeddings
        b, gene = (int(x) for x in (data["valid"] & ~data["node_mask"]).nonzero()[0])
        x2 = data["gene_x"].clone()
        x2[gene] = 7.0
        h2 = model.embed(x2, data["edge_index"], data["node_mask"], data["edge_masks"])
        assert torch.allclose(h2[b], h[b], atol=1e-6)
        # masking an edge in one sample changes that sample only
        t = "ppi"
        e = int(data["edge_masks"][t][1].nonzero()[0, 0])
        em1 = {**data["edge_masks"], t: data["edge_masks"][t].clone()}
        em1[t][1, e] = False
        out = _gnn_call(model, data, edge_masks=em1)
        others = torch.arange(B) != 1
        assert torch.allclose(out[others], base[others], atol=1e-6) and not torch.allclose(out[1], base[1])


def test_eval_no_grad_and_device_move(data):
    torch.manual_seed(0)
    tf = _transformer().to("cpu").eval()
    gnn = MaskedGNN(N, D, list(data["edge_index"]), d_hidden=16, n_labels=L).to("cpu").eval()
    moved = {k: v.to("cpu") if isinstance(v, torch.Tensor) else {t: x.to("cpu") for t, x in v.items()}
             for k, v in data.items()}  # AdjRows has .to() too
    with torch.no_grad():
        p1, r1 = _tf_call(tf, moved)
        p2, r2 = _tf_call(tf, moved)
        g = _gnn_call(gnn, moved)
    assert not p1.requires_grad and not g.requires_grad
    assert torch.equal(p1, p2) and torch.equal(r1, r2) and torch.isfinite(g).all()


def test_transformer_sees_perturbation_types_and_genes(data):
    torch.manual_seed(0)
    model = _transformer().eval()
    with torch.no_grad():
        base, _ = _tf_call(model, data, adj=False)
        other_types = (data["pert_types"] % 6) + 1
        p_types, _ = model(data["gene_x"], data["pert_ptr"], data["pert_genes"], other_types, None)
        # a gene listed twice in M(S) gets both type embeddings (accumulated, so order does not matter)
        ptr, genes = torch.tensor([0, 2, 4, 6]), torch.tensor([3, 3, 3, 3, 3, 3])
        a, _ = model(data["gene_x"], ptr, genes, torch.tensor([1, 4, 4, 1, 4, 4]), None)
    assert not torch.allclose(p_types, base)
    assert torch.allclose(a[0], a[1], atol=1e-6) and not torch.allclose(a[0], a[2])
