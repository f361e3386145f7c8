"""Prune one random source (:mod:`.source`) into a basis network, stage by stage, by subset sums.

The layout is the L+1 one (Burkholz 2022): a first layer of univariate *copies* ``relu(a_s x)``
(``a_s > 0`` carry ``relu(x)``, ``a_s < 0`` carry ``relu(-x)``) and *constants* ``relu(beta_s)``,
then one source layer per basis layer whose weights are subset sums of products over them. In a
univariate block each basis neuron ``c_k relu(x - t_k)`` is one source neuron ``r`` with
``sign(V_r) = sign(c_k)``: by positive homogeneity ``V_r relu(z_r) = sign(c_k) relu(|V_r| z_r)``, so
the output weight is absorbed into the incoming sums (``|V_r| z_r ~ |c_k| (x - t_k)``) and a neuron
costs one output weight, not a block of copies as in the general construction
(:mod:`lotterylab.construct`, which cannot absorb: its neurons feed many outputs).

Every instance is solved exactly (:func:`lotterylab.subsetsum.solve`, at most 32 candidates,
``min_cardinality`` by default: the fewest kept weights within tolerance). A failed instance moves
to a fresh source neuron (univariate blocks) or the next window of copies (dense blocks). Each
block's error against its basis stage is then computed exactly (:mod:`.certify`), and the instance
tolerance halves until it fits the block's budget; the blocks' errors compose along the chain.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import models, subsetsum
from ..masks import Mask
from .basis import Basis, Dense, Univariate
from .certify import dense_errors, univariate_errors
from .source import init_spec

N_CAND = 32           # candidates per instance (the exact solvers' limit)
COPIES = 64           # copy neurons of a univariate block (about half of each sign)
CONSTANTS = 64        # constant neurons of a block's first layer (about half usable: beta > 0)
DENSE_WINDOWS = 3     # disjoint windows of N_CAND copies per sign a dense block can retry on
DENSE_COPIES = 2 * N_CAND * DENSE_WINDOWS + CONSTANTS
RETRIES = 6
TIGHTEN = 8           # halvings of a block's instance tolerance before it gives up on its budget


class UniversalError(ValueError):
    """A universal ticket that cannot be built as asked (the message names the fix)."""


def layout(basis: Basis, ranges: list[tuple[float, float]]) -> list[dict]:
    """The source's stages for ``basis``: sizes and weight scales from the basis' values."""
    stages, width = [], basis.dim
    for (kind, s), (lo, hi) in zip(basis.stages, ranges):
        if kind == "dense":
            K = s.matrix()
            top = max(np.abs(K).max(), np.abs(np.asarray(s.bias)).max(), 1e-12)
            stages.append({"kind": "dense", "inputs": width, "outputs": K.shape[0],
                           "copies": DENSE_COPIES, "scale": _scale(top)})
            width = K.shape[0]
        else:
            c, t = s.coefficients(), np.asarray(s.knots[:-1])
            top = max(np.abs(c).max(), np.abs(c * t).max(), 1e-12)
            n = len(c)
            output = kind == "univariate"
            # a neuron per term of its sign (about half the pool has each sign), spares for retries, and
            # unused neurons whose biases make the output bias (about half have b > 0)
            side = max(int((c > 0).sum()), int((c < 0).sum())) + max(16, n // 4)
            stages.append({"kind": "univariate", "copies": COPIES + CONSTANTS,
                           "neurons": (2 * side + 2 * N_CAND) if output else n + max(16, n // 4), "output": output,
                           "scale": _scale(top if output else max(1.0, abs(lo), abs(hi)))})
            width = width if output else width * stages[-1]["neurons"]
    return stages


def _scale(top: float) -> float:
    # ~16 positive products of U[-a, a] x U[-1, 1] reach about 4a; keep the largest target well inside
    return float(max(1.0, 2.0 ** math.ceil(math.log2(top / 1.5)))) if top > 1.5 else 1.0


def draw(basis: Basis, stages: list[dict], seed: int):
    init = {"weight": "uniform", "bias": "uniform", "overrides": init_spec(stages)}
    out = len(basis.features)
    return models.create("universal_source", "relu", (1, 1, basis.dim), out, init=init, seed=seed,
                         dim=basis.dim, stages=stages)


def _solve(values: list[torch.Tensor], targets: list[float], eps: float, objective: str):
    """Instances of ragged candidate lists, padded with zeros (a zero candidate is never needed)."""
    if not values:
        return [], [], []
    X = torch.zeros(len(values), N_CAND, dtype=torch.float64)
    for i, v in enumerate(values):
        X[i, :len(v)] = v
    r = subsetsum.solve(X, torch.tensor(targets, dtype=torch.float64), eps, objective)
    return r.mask, (r.sum - torch.tensor(targets, dtype=torch.float64)).tolist(), r.ok.tolist()


def _first_layer(block, n_copies: int):
    a = block.copies.weight.detach().double()[:, 0]
    beta = block.copies.bias.detach().double()
    idx = torch.arange(len(a))
    pos = idx[(idx < n_copies) & (a > 0)]
    neg = idx[(idx < n_copies) & (a < 0)]
    con = idx[(idx >= n_copies) & (beta > 0)][:N_CAND - 1]
    return a, beta, pos, neg, con


def univariate_stage(block, u: Univariate, lo: float, hi: float, budget: float, objective: str, output: bool):
    """Masks for one univariate block realising ``u`` on ``[lo, hi]`` within ``budget`` (its exact sup
    error, :mod:`.certify`); returns (masks, record). The instance tolerance starts at the budget over
    sqrt(neurons) (errors of independent instances rarely add up) and halves until the block fits."""
    n = max(1, int((u.coefficients() != 0).sum()))
    X = max(abs(lo), abs(hi))
    eps = budget / (np.sqrt(n) * (X + 1.0) + 1.0) if output else budget / (X + 1.0)
    for _ in range(TIGHTEN):
        masks, rec = _univariate_try(block, u, lo, hi, eps, objective, output)
        errs = univariate_errors(block, masks, u, lo, hi, None if output else rec["columns"])
        rec["construction_error"] = max(errs)
        if rec["construction_error"] <= budget:
            break
        eps /= 2
    return masks, rec


def _univariate_try(block, u: Univariate, lo: float, hi: float, eps: float, objective: str, output: bool):
    a, beta, pos, neg, con = _first_layer(block, COPIES)
    W = block.neurons.weight.detach().double()
    b = block.neurons.bias.detach().double()
    c, t = u.coefficients(), np.asarray(u.knots[:-1])
    if output:
        V = block.out.weight.detach().double()[0]
        terms = [k for k in np.argsort(-np.abs(c), kind="stable") if c[k] != 0]
    else:
        V = torch.ones(W.shape[0], dtype=torch.float64)
        terms = list(range(len(c)))
    if output:  # neurons by |V|, per sign: the largest output weights go to the largest terms
        order = [int(r) for r in torch.argsort(-V.abs())]
        free = {1: [r for r in order if V[r] > 0], -1: [r for r in order if V[r] < 0]}
    else:
        free = {1: list(range(W.shape[0])), -1: []}
    sides = [("pos", pos, hi > 0), ("neg", neg, lo < 0)]
    assigned, pending = {}, list(terms)
    for attempt in range(RETRIES):
        if not pending:
            break
        batch = []
        for k in pending:
            sign = int(np.sign(c[k])) if output else 1
            if not free[sign]:
                if attempt == 0:
                    raise UniversalError(f"the source block has too few neurons of sign {sign} for {u.name or 'a net'}; "
                                         f"this is a sizing bug, please report it")
                break  # the spares went to retries: the instances are too hard at this tolerance
            batch.append((k, free[sign].pop(0)))
        if len(batch) < len(pending):
            break
        results = {}
        for name, cand, used in sides + [("bias", con, True)]:
            if not used:
                continue
            vals, tg = [], []
            for k, r in batch:
                mag = abs(c[k]) if output else 1.0
                f = V[r].abs()
                if name == "bias":
                    vals.append(torch.cat([f * W[r, cand] * beta[cand], (f * b[r]).view(1)]))
                    tg.append(-mag * t[k])
                else:
                    vals.append(f * W[r, cand[:N_CAND]] * a[cand[:N_CAND]].abs())
                    tg.append(mag if name == "pos" else -mag)
            results[name] = _solve(vals, tg, eps, objective)
        pending = []
        for i, (k, r) in enumerate(batch):
            if all(res[2][i] for res in results.values()):
                assigned[k] = (r, {n: (res[0][i], res[1][i]) for n, res in results.items()})
            else:
                pending.append(k)  # a fresh neuron next time; this one stays unused (masked)
    if pending:
        raise UniversalError(f"{len(pending)} neurons of {u.name or 'a univariate net'} found no subset within "
                             f"{eps:.2e} (the per-instance tolerance this eps needs) on up to {RETRIES} source neurons "
                             f"each; raise eps")
    masks = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in block.named_parameters()}
    for r, sol in assigned.values():
        for name, cand in (("pos", pos[:N_CAND]), ("neg", neg[:N_CAND])):
            if name in sol:
                sel = cand[sol[name][0][:len(cand)]]
                masks["neurons.weight"][r, sel] = True
                masks["copies.weight"][sel, 0] = True
        m = sol["bias"][0]
        sel = con[m[:len(con)]]
        masks["neurons.weight"][r, sel] = True
        masks["copies.bias"][sel] = True
        masks["neurons.bias"][r] = bool(m[len(con)])
        if output and (bool(masks["neurons.weight"][r].any()) or bool(masks["neurons.bias"][r])):
            masks["out.weight"][0, r] = True  # (a term whose sums are all empty is a dead neuron: nothing kept)
    record = {"name": u.name, "neurons": len(assigned), "eps_instance": float(eps), "basis_error": u.error}
    if output:  # output bias v_0: constants V_r relu(b_r) of unused neurons, and the output bias itself
        used = {r for r, _ in assigned.values()}
        spare = [r for r in range(W.shape[0]) if r not in used and b[r] > 0][:N_CAND - 1]
        vals = [torch.cat([V[spare] * b[spare], block.out.bias.detach().double().view(1)])]
        m, _, _ = _solve(vals, [u.values[0]], eps, objective)
        for j, r in enumerate(spare):
            if m[0][j]:
                masks["neurons.bias"][r] = True
                masks["out.weight"][0, r] = True
        masks["out.bias"][0] = bool(m[0][len(spare)])
        record["lipschitz"] = float(np.abs(np.diff(u.values) / np.diff(u.knots)).max())
    else:
        record["columns"] = [assigned[k][0] for k in range(len(c))]
    return masks, record


def dense_stage(block, d: Dense, lo: float, hi: float, budget: float, objective: str):
    """Masks for one dense block realising ``v = K z + bias`` for ``z`` in ``[lo, hi]^C`` within ``budget``
    (exact, :mod:`.certify`); the tolerance starts at the budget over sqrt(C) and halves until it fits."""
    C = d.matrix().shape[1]
    X = max(abs(lo), abs(hi))
    eps = budget / (np.sqrt(C) * X + 1.0)
    for _ in range(TIGHTEN):
        masks, rec = _dense_try(block, d, lo, hi, eps, objective)
        rec["construction_error"] = max(dense_errors(block, masks, d, lo, hi), default=0.0)
        if rec["construction_error"] <= budget:
            break
        eps /= 2
    return masks, rec


def _dense_try(block, d: Dense, lo: float, hi: float, eps: float, objective: str):
    n1 = block.copies.weight.shape[0]
    n_copies = n1 - CONSTANTS
    a, beta, pos, neg, con = _first_layer(block, n_copies)
    W = block.mix.weight.detach().double()
    bm = block.mix.bias.detach().double()
    K, bias = d.matrix(), np.asarray(d.bias)
    M, C = K.shape
    masks = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in block.named_parameters()}
    for name, cand, used in (("pos", pos, hi > 0), ("neg", neg, lo < 0)):
        if not used:
            continue
        todo = [(j, i) for j in range(M) for i in range(C) if K[j, i] != 0]
        for w in range(DENSE_WINDOWS):
            win = cand[w * N_CAND:(w + 1) * N_CAND]
            if not todo or not len(win):
                break
            vals = [W[j, i * n1 + win] * a[win].abs() for j, i in todo]
            tg = [K[j, i] if name == "pos" else -K[j, i] for j, i in todo]
            m, e, ok = _solve(vals, tg, eps, objective)
            left = []
            for q, (j, i) in enumerate(todo):
                if not ok[q] and w + 1 < DENSE_WINDOWS:
                    left.append((j, i))
                    continue
                sel = win[m[q][:len(win)]]
                masks["mix.weight"][j, i * n1 + sel] = True
                masks["copies.weight"][sel, 0] = True
            todo = left
    vals = [torch.cat([W[j, con] * beta[con], bm[j].view(1)]) for j in range(M)]
    m, _, _ = _solve(vals, bias.tolist(), eps, objective)
    for j in range(M):
        sel = con[m[j][:len(con)]]
        masks["mix.weight"][j, sel] = True
        masks["copies.bias"][sel] = True
        masks["mix.bias"][j] = bool(m[j][len(con)])
    record = {"name": "dense", "outputs": M, "eps_instance": float(eps), "basis_error": 0.0,
              "lipschitz": float(np.abs(K).sum(1).max()) if M else 0.0}
    return masks, record


def prune(basis: Basis, ranges, budgets: list[float], seed: int, objective: str = "min_cardinality"):
    """Draw the source for ``basis`` from ``seed`` and prune it; returns (model, Mask, stage records, bound)."""
    stages = layout(basis, ranges)
    model = draw(basis, stages, seed)
    masks, records, bound = {}, [], 0.0
    for i, ((kind, s), (lo, hi), budget) in enumerate(zip(basis.stages, ranges, budgets)):
        block = model.stages[i]
        if kind == "dense":
            m, rec = dense_stage(block, s, lo, hi, budget, objective)
        else:
            m, rec = univariate_stage(block, s, lo, hi, budget, objective, output=kind == "univariate")
        bound = _compose(bound, rec)
        rec["budget"] = budget  # what the block was allowed (construction error, exact, is at most this)
        rec["bound_after"] = bound
        records.append(rec)
        masks.update({f"stages.{i}.{n}": v for n, v in m.items()})
    return model, stages, Mask(masks), records, bound


def _compose(upstream: float, rec: dict) -> float:
    """|ticket - exact| after this stage <= its own error + its basis net's Lipschitz x upstream error."""
    own = rec["construction_error"] + (rec["basis_error"] if math.isfinite(rec["basis_error"]) else 0.0)
    return own + rec.get("lipschitz", 1.0) * upstream
