"""The ticket and its report: what was built, how large, how well, built once from the engine's state."""

from __future__ import annotations

from ..masks import Mask
from ..tickets import Ticket
from .certificate import Certificate, unresolved_per_layer
from .source import init_spec


def to_ticket(e, cert: Certificate, history: list, mode: str, eps, eps_param, wall: float) -> Ticket:
    """The ticket (architecture, init specs, seed, mask) and its report, built once from the engine."""
    src, cfg, t, lo, hi = e.src, e.cfg, e.t, e.lo, e.hi
    reads = [L.reads for L in src.layers]
    adds = {L.add_from for L in src.layers if L.add_from is not None}
    # a row whose outgoing edges are all pruned contributes nothing: prune it entirely (when the
    # next layer is its only reader)
    for k in range(len(src.layers) - 2, -1, -1):
        L, nxt = src.layers[k], src.layers[k + 1]
        if k in adds or reads.count(k) != 1 or reads[k + 1] != k:
            continue
        used = nxt.mW.any(0).any(-1)
        L.mW[~used] = False
        L.mb[~used] = False
    widths = src.widths()
    acts = [L.act for L in src.layers[:-1]]
    init = {}
    masks = {}
    plan = []
    end = {-1: -1}  # source layer -> plan position of its output (after activation and pooling)
    for k, L in enumerate(src.layers):
        init[f"{L.name}.weight"] = init_spec(L)
        init[f"{L.name}.bias"] = {"dist": "uniform", "low": -L.b_scale, "high": L.b_scale}
        rows, cols = L.W.shape[:2]
        if L.geo is not None and L.geo["op"] == "conv":
            plan.append(dict(L.geo, **{"in": cols, "out": rows}))
            masks[f"{L.name}.weight"] = L.mW.cpu().reshape(rows, cols, *L.geo["kernel"])
        else:
            plan.append({"op": "linear", "in": cols * L.T, "out": rows})
            masks[f"{L.name}.weight"] = L.mW.cpu().reshape(rows, cols * L.T)
        masks[f"{L.name}.bias"] = L.mb.cpu()
        if L.input_layer is not None and end[reads[k]] != len(plan) - 2:  # not the op just before
            plan[-1]["input"] = end[reads[k]]
        if L.add_from is not None:
            plan[-1]["add"] = end[L.add_from]
        if L.act is not None:
            plan.append({"op": "act", "name": L.act})
        plan.extend(dict(op) for op in L.post)
        end[k] = len(plan) - 1
    if t.geometry:
        arch = {"name": "source_net", "activation": "relu", "input_shape": list(t.input_shape),
                "num_classes": widths[-1], "kwargs": {"plan": plan}}
    else:
        arch = {"name": "source_mlp", "activation": "relu", "input_shape": [1, 1, widths[0]],
                "num_classes": widths[-1], "kwargs": {"widths": widths, "acts": acts}}
    mask = Mask(masks)
    src_params = sum(L.W.numel() + L.b.numel() for L in src.layers)
    kept = mask.num_kept()
    report = {
        "mode": mode, "eps": eps, "eps_param": cfg.eps_param, "layer_eps": cfg.layer_eps,
        "guarantee_mode": eps_param is None,
        "first_layer": e.first.name, "objective": cfg.objective,
        # the identity first layer is the papers' idealised experiment: its source is not a network of
        # the target's activation throughout, so the ticket is not a pure pruning of a phi-network
        "pure_pruning": e.first.name != "identity",
        # the linearised / moment-matched first layer's input scale, and the Taylor orders matched to 0
        # beside the weight (moment matching: the lowest non-zero order >= 2)
        "first_layer_s1": e.first.s1 if e.first.scaled else None,
        "matched_orders": list(getattr(e.first, "orders", ())),
        "copy_objective": cfg.copy_objective or cfg.objective, "copy_scale": cfg.copy_scale,
        "rho": cfg.rho, "rho_first": cfg.rho_first, "rho_b": cfg.rho_b,
        "certificate": cert.bound, "certificate_per_layer": cert.per_layer,
        "depth": {"target": longest_path([t.input_of(k) for k in range(t.depth)],
                                         [(t.add_of(k) or {}).get("from") for k in range(t.depth)]),
                  "source": longest_path(reads, [L.add_from for L in src.layers])},
        "widths": {"target": t.widths, "source": widths},
        "parameters": {"target": t.num_parameters(), "source": src_params, "ticket": kept,
                       "source_per_target": src_params / t.num_parameters(),
                       "ticket_per_target": kept / t.num_parameters()},
        # instances: subset sums the solver ran, re-solves included (after growth; a bias solved in two
        # stages counts twice), so the count measures the solver's work, not the target's entries
        "subset_sum": {"instances": e.stats["instances"], "zero_weights_skipped": e.stats["zero_weights"],
                       "failed_first_try": e.stats["failed_first_try"],
                       "unresolved": e.stats["unresolved"], "neurons_added": src.grown,
                       "mean_subset_size": e.stats["_size_sum"] / max(e.stats["instances"], 1),
                       "unresolved_per_layer": unresolved_per_layer(e)},
        "timings_s": {"total": wall, "subset_sum": e.stats["solve_time_s"]},
        "rounds": history,
        "domain": {"low": lo.tolist() if lo.numel() <= 64 else [float(lo.min())],
                   "high": hi.tolist() if hi.numel() <= 64 else [float(hi.max())]},
        "theory_width_bound": e.family.theory_bound(t, cfg.rho),
    }
    if e.family.kernel_instances:  # what the whole-kernel instances were solved with (the beam has no min_l1)
        report["granularity"] = cfg.granularity
        report["kernel_objective"] = "min_error" if cfg.objective == "min_error" else "min_cardinality"
        report["beam_width"] = cfg.beam_width
    return Ticket(arch, init, e.seed, mask, report)


def longest_path(inputs: list[int], adds: list) -> int:
    """Weight layers on the longest input -> output path (a residual addition skips the layer)."""
    d = {-1: 0}
    for k, (i, a) in enumerate(zip(inputs, adds)):
        d[k] = max(1 + d[i], d[a] if a is not None else 0)
    return d[len(inputs) - 1]
