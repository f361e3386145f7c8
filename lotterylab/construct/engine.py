"""The solving engine shared by every construction family: subset sums per (row, unit) pair, biases
from constant neurons, and repair by growing the source with real neurons.

A family (:mod:`lotterylab.construct.families`) lays out the source's layers and their row roles;
the engine solves whatever rows it is given, without knowing which family laid them out. A failed
pair gets one more candidate (a new copy neuron of its unit in the layer below) and only failed
pairs are solved again; a failed bias gets new constant neurons below. Refinements on a data
sample (bias correction, compensation) plug in as hooks.
"""

from __future__ import annotations

import time

import torch

from .. import subsetsum
from ..target import TargetMLP
from . import growth, kernels
from .config import ConstructionError, RoundSettings
from .first_layer import LinearRegime
from .ledger import Ledger
from .moment_pairs import solve_moment_pairs
from .source import RandomSource, SourceLayer
from .tables import candidate_tables, candidate_values, extend_tables, table_lengths, unit_columns


class Engine:
    """Builds one source for one round: the family calls :meth:`solve_rows` layer by layer."""

    def __init__(self, t: TargetMLP, cfg: RoundSettings, family, first: LinearRegime, seed: int, lo, hi, device,
                 const_inputs=None, scale_biases=None, calibration: torch.Tensor | None = None, executor=None):
        from .refine import BiasCorrection, Compensation

        self.t, self.cfg, self.family, self.first, self.seed, self.device = t, cfg, family, first, seed, device
        self.psi = first.psi
        self.executor = executor  # None: solve here; else batches of instances go to its workers
        # candidate values gathered per solver call (12 MB in float64); larger with workers to feed, so
        # that a call splits into parts for all of them (at most 32x: 384 MB). Pairs are independent:
        # the ticket is the same
        workers = executor.workers if executor is not None and executor.name != "serial" else 0
        self.chunk_values = 1_500_000 * min(32, max(1, 4 * workers))
        self.log = lambda text: None  # construct(log=...) sets a stage printer
        self.correction = BiasCorrection(self, calibration) if calibration is not None else None
        self.compensation = Compensation(self) if cfg.compensate and calibration is not None else None
        self.const_inputs = const_inputs if const_inputs is not None else torch.zeros(0, dtype=torch.long)
        # layer scales follow the target's own biases (before constant inputs were folded into them)
        self.scale_biases = list(scale_biases if scale_biases is not None else t.biases)
        self.lo, self.hi = lo, hi
        self.src = RandomSource(seed, device, prefix="layers" if t.geometry else "linears")
        self.H = t.bounds(lo, hi)  # |h| of every layer's input over the box
        self.stats = {"instances": 0, "failed_first_try": 0, "unresolved": 0, "solve_time_s": 0.0, "_size_sum": 0,
                      "zero_weights": 0}
        self.ledgers: dict[int, Ledger] = {}  # source layer index -> what its rows realise
        self._tab_cache: dict[tuple, tuple[torch.Tensor, tuple]] = {}  # -> (list lengths, tables)
        self.stamps = 0  # rows touched so far (ledger.stamp)

    def new_ledger(self, C: SourceLayer, n_in: int, tl: int, product: bool) -> Ledger:
        self.ledgers[C.index] = Ledger.empty(n_in, C.T, tl, product)
        self.ledgers[C.index].fit(C.W.shape[0])
        return self.ledgers[C.index]

    def touch(self, C: SourceLayer, rows: torch.Tensor, weights: bool = True) -> None:
        """Rows of C whose selection changes now: their stamps move (``weights=False``: only their
        biases change, so their pre-activations stay)."""
        self.stamps += 1
        led = self.ledgers[C.index]
        led.stamp[rows] = self.stamps
        if weights:
            led.wstamp[rows] = self.stamps

    def fit(self, C: SourceLayer) -> None:
        self.ledgers[C.index].fit(C.W.shape[0])

    def run(self, values, targets, eps, copies: bool = False, objective: str | None = None):
        """Solve padded instances (float64, CPU); padding candidates are 0 and never help.

        Vector instances (whole kernels) beyond exact enumeration are solved by the beam search, which
        has min_error and min_cardinality only: min_l1 becomes min_cardinality there (the report's
        ``kernel_objective`` says so)."""
        t0 = time.perf_counter()
        if objective is None:
            objective = (self.cfg.copy_objective or self.cfg.objective) if copies else self.cfg.objective
        if values.dim() == 3 and objective == "min_l1":
            objective = "min_cardinality"
        if self.executor is None:
            res = subsetsum.solve(values.double().cpu(), targets.double().cpu(), eps, objective,
                                  beam_width=self.cfg.beam_width)
        else:
            res = subsetsum.solve_on(self.executor, values.double().cpu(), targets.double().cpu(), eps, objective,
                                     beam_width=self.cfg.beam_width)
        self.stats["solve_time_s"] += time.perf_counter() - t0
        self.stats["instances"] += len(targets)
        self.stats["_size_sum"] += int(res.mask.count_nonzero())
        return res

    def tables(self, P: SourceLayer, product: bool, limit: int = subsetsum.MAX_N):
        """Candidate tables of P, cached while its units' candidate lists stay as they are (compensation
        solves a layer in many small calls), and extended where growth added candidates."""
        key = (P.index, product, limit)
        lengths = table_lengths(P, product)
        hit = self._tab_cache.get(key)
        if hit is not None and torch.equal(hit[0], lengths):
            return hit[1]
        if hit is not None and len(hit[0]) == len(lengths) and bool((hit[0] <= lengths).all()):
            out = extend_tables(P, product, self.first, limit, hit[1], hit[0], lengths)
        else:
            out = candidate_tables(P, product, self.first, limit)
        self._tab_cache[key] = (lengths, out)
        return out

    def solve_pairs(self, C: SourceLayer, P: SourceLayer, rows: torch.Tensor, units: torch.Tensor,
                    clear: bool = True) -> torch.Tensor:
        """Solve the weights of instances (rows[k], units[k]) of layer C over candidates in P; returns ok.

        ``clear``: a re-solve first removes the pair's earlier selection (a first solve has none)."""
        if (self.family.kernel_instances and self.cfg.granularity != "weight" and C.T > 1 and C.geo is not None
                and C.geo["op"] == "conv"):
            # (a Linear head over a flattened map also has taps, one per position: those are single
            # weights, the D = 1 case)
            return kernels.solve_kernel_pairs(self, C, P, rows, units, clear)
        inf = self.ledgers[C.index]
        if inf.product and self.first.dim > 1:  # moment matching: one vector instance per (pair, tap)
            return solve_moment_pairs(self, C, P, rows, units, clear)
        product = inf.product
        W_t = self.t.w3(inf.tl)  # [n_out, n_in, T]
        col, coef, valid, mult = self.tables(P, product)
        S, n_max, T = col.shape[1], col.shape[2], C.T
        ep = self.cfg.eps_for(inf.tl)
        eps = self.first.pair_eps(ep) if product else ep
        neuron = inf.neuron[rows]
        ok_all = torch.ones(len(rows), dtype=torch.bool)
        self.touch(C, rows)
        chunk = max(1, self.chunk_values // (S * n_max * T))
        for c0 in range(0, len(rows), chunk):
            r, u, i = rows[c0:c0 + chunk], units[c0:c0 + chunk], neuron[c0:c0 + chunk]
            # one instance per (pair, tap, side): the same candidates at every tap of the kernel
            v = candidate_values(C, r, u, col, valid, coef)  # [k, T, S, n_max]
            tgt = W_t[i, u].unsqueeze(1) * mult.view(1, -1, 1)  # [k, S, T]
            tgt = tgt + inf.shift[r, u, :S]  # (compensation; zero otherwise)
            res = self.run(v.view(-1, n_max), tgt.permute(0, 2, 1).reshape(-1), eps, copies=not product)
            ok = res.ok.reshape(len(r), T * S).all(1)
            ok_all[c0:c0 + chunk] = ok
            # replace this pair's previous selection (over ALL of the unit's candidates) by the new one
            if clear:
                all_r, all_c = unit_columns(P, product, r, u)
                C.mW[all_r.to(C.mW.device), all_c.to(C.mW.device)] = False
            inst, jj = res.mask.nonzero(as_tuple=True)  # instance = (pair, tap, side), flat
            kk, tt, ss = inst // (T * S), (inst // S) % T, inst % S
            keep = valid[u[kk], ss, jj]  # padding never counts, even when a zero was chosen
            kk, tt, ss, jj = kk[keep], tt[keep], ss[keep], jj[keep]
            cols = col[u[kk], ss, jj]
            dev = C.mW.device
            C.mW[r[kk].to(dev), cols.to(dev), tt.to(dev)] = True
            # the solver's own sums (padding candidates are zero); l1 over the selected entries only
            sums = res.sum.reshape(len(r), T, S).permute(0, 2, 1)  # [k, S, T]
            inf.p[r, u] = sums[:, 0]
            if S == 2:
                inf.q[r, u] = sums[:, 1]
            w = C.W[r[kk].to(dev), cols.to(dev), tt.to(dev)].double().cpu().abs()
            l1 = torch.zeros(len(r) * T, dtype=torch.float64).index_add_(0, kk * T + tt, w)
            inf.l1v[r, u] = l1.view(len(r), T)
            inf.ok[r, u] = ok
        return ok_all

    def solve_biases(self, C: SourceLayer, P: SourceLayer, rows: torch.Tensor) -> torch.Tensor:
        inf = self.ledgers[C.index]
        neuron = inf.neuron[rows]
        targets = self.t.biases[inf.tl][neuron].clone()
        phi0 = self.first.bias_offset
        if inf.product and phi0 is not None:
            # phi(0) of every selected copy (at every tap) adds up: move it into the bias target
            cols = torch.tensor([c for j in P.unit_rows for c in P.unit_rows[j]], dtype=torch.long)
            Wsel = (C.W[rows][:, cols].double().cpu() * C.mW[rows][:, cols].cpu())
            targets -= phi0 * Wsel.sum((1, 2))
        true_targets = targets.clone()
        if self.correction is not None:
            targets -= self.correction.shift(C, rows)
        crow = torch.tensor(P.const_rows, dtype=torch.long)
        kappa = growth.const_value(self, P, crow)
        # ReLU constants with beta <= 0 output 0: useless (moment matching's are smooth and drawn small or
        # spread over many scales: every non-zero one counts)
        use = kappa != 0 if self.first.dim > 1 else kappa.abs() > 1e-3
        multi_scale = inf.product and self.first.dim > 1 and self.psi.phi0 != 0
        keep = 2 * subsetsum.MAX_N if multi_scale else subsetsum.MAX_N
        crow, kappa = crow[use][-keep:], kappa[use][-keep:]
        if len(crow) == 0:
            raise ConstructionError(f"source layer {P.index} has no usable constant neuron; raise rho_b")
        tc = C.centre  # constants reach the bias through one tap that is inside the image everywhere
        # (the constants' columns only: C.W[rows] first copied whole rows, 0.6 GB for the demo's first layer)
        dev = C.W.device
        w = C.W[rows.to(dev).view(-1, 1), crow.to(dev).view(1, -1), tc].double().cpu()
        if multi_scale and len(crow) > subsetsum.MAX_N:
            sel, total, ok = two_stage(self.run, w * kappa, kappa, targets, self.cfg.eps_for(inf.tl))
        else:
            res = self.run(w * kappa, targets, self.cfg.eps_for(inf.tl))
            sel, total, ok = res.mask, res.sum.double(), res.ok
        allc = torch.tensor(P.const_rows, dtype=torch.long)  # clear any earlier choice, then set this one
        C.mW[rows.view(-1, 1).expand(-1, len(allc)), allc.view(1, -1).expand(len(rows), -1), tc] = False
        C.mW[rows.view(-1, 1).expand_as(sel)[sel], crow.view(1, -1).expand_as(sel)[sel], tc] = True
        growth.keep_constant(self, P, crow[sel.any(0)])
        # the certificate measures the realised bias against the target's own (a correction is an error there)
        inf.bias_err[rows] = (total - true_targets).abs()
        inf.bias_real[rows] = total
        inf.bias_ok[rows] = ok
        self.touch(C, rows, weights=False)  # (the constants' columns: no copy row reads them)
        return ok

    def settle_pairs(self, C: SourceLayer, P: SourceLayer, r: torch.Tensor, u: torch.Tensor) -> None:
        """Solve pairs (r[k], u[k]) of C; failed pairs get one more candidate each round and are solved again."""
        ok = self.solve_pairs(C, P, r, u, clear=False)
        self.stats["failed_first_try"] += int((~ok).sum())
        for _ in range(self.cfg.max_growth_rounds):
            if ok.all():
                break
            r, u = r[~ok], u[~ok]
            growth.grow_unit(self, P, sorted(set(u.tolist())))
            self.fit(C)
            ok = self.solve_pairs(C, P, r, u)
        self.stats["unresolved"] += int((~ok).sum())

    def solve_rows(self, C: SourceLayer, P: SourceLayer, rows: list[int]) -> None:
        """Solve every pair and the bias of ``rows``; repair failures by growing P."""
        inf = self.ledgers[C.index]
        self.fit(C)
        rows_t = torch.tensor(rows, dtype=torch.long)
        units = torch.arange(inf.n_in)
        if inf.tl == 0 and len(self.const_inputs):  # folded into the bias: no weight to build
            keep = torch.ones(inf.n_in, dtype=torch.bool)
            keep[self.const_inputs] = False
            units = units[keep]
        U = self.compensation.factor(C, P) if self.compensation is not None else None
        if U is not None:
            self.compensation.solve(C, P, rows_t, units, U)
        else:
            r, u = rows_t.repeat_interleave(len(units)), units.repeat(len(rows))
            # a weight that is exactly 0 (pruned targets, e.g. found by IMP) is met exactly by the empty
            # subset under every objective: nothing to solve or keep
            nz = self.t.w3(inf.tl)[inf.neuron[r], u].reshape(len(r), -1).ne(0).any(1)
            self.stats["zero_weights"] += int((~nz).sum())
            self.settle_pairs(C, P, r[nz], u[nz])
        bad = rows_t
        okb = self.solve_biases(C, P, bad)
        self.stats["failed_first_try"] += int((~okb).sum())
        for _ in range(self.cfg.max_growth_rounds):
            if okb.all():
                break
            bad = bad[~okb]
            growth.grow_constants(self, P, 4)
            self.fit(C)
            okb = self.solve_biases(C, P, bad)
        self.stats["unresolved"] += int((~okb).sum())


def two_stage(run, values: torch.Tensor, scale: torch.Tensor, targets: torch.Tensor, eps: float):
    """Subset sums beyond one instance's reach, as ``(mask, sums, ok)``. Moment matching with
    phi(0) != 0 moves phi(0) * sum v of weights ~1/s1 into the biases: targets ~1e5 to be met to ~1e-6,
    ~37 bits, where an exact subset sum of 32 candidates has ~32. The candidates (columns of
    ``values``) split by ``|scale|`` (the constants' phi(beta)) into a coarse half, solved for the least
    error, and a fine half, solved to ``eps`` for what the coarse half left. The halves are disjoint,
    so the kept set is their union and its sum the two sums'. ``run(values, targets, eps, objective=)``
    solves a batch (``objective=None``: the construction's)."""
    order = torch.argsort(scale.abs(), descending=True, stable=True)
    coarse, fine = order[:len(order) // 2], order[len(order) // 2:]
    r1 = run(values[:, coarse], targets, eps, objective="min_error")
    r2 = run(values[:, fine], targets - r1.sum.double(), eps, objective=None)
    sel = torch.zeros(values.shape, dtype=torch.bool)
    sel[:, coarse], sel[:, fine] = r1.mask, r2.mask
    return sel, r1.sum.double() + r2.sum.double(), r2.ok
