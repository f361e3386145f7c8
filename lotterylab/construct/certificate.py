"""The error certificate: an a-posteriori bound on ``sup |target(x) - ticket(x)|`` over the box.

Computed from the realised ticket (the ledger of every constructed layer), with interval bounds
of the target's hidden units over the domain and the realised subsets' l1 masses (Burkholz 2022,
arXiv:2205.02321 §3; residual graphs add each branch's error, Burkholz ICML'22,
arXiv:2205.02343). Pure functions of the engine's state: nothing here changes the ticket.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import activations as acts_mod
from .sizes import a_scale


@dataclass
class Certificate:
    bound: float
    per_layer: list[float]
    own: list[float]  # per layer: the error it adds by itself
    amp: list[float]  # per layer: the factor by which it amplifies the error it receives


def certify(e) -> Certificate:
    """The bound after every target layer, and each layer's own error and amplification
    (e_l <= own_l + amp_l * e_(l-1), about), which guarantee mode uses to retune tolerances."""
    t = e.t
    errs, own_l, amp_l = [], [], []
    e_out = {-1: 0.0}  # sup error of each target layer's output (residual graphs: per layer, not a chain)
    for l, k in enumerate(sorted(e.ledgers)):
        e_prev = e_out[t.input_of(l)]
        inf, C = e.ledgers[k], e.src.layers[k]
        rows = C.copy_row_index()
        w = t.w3(l)[inf.neuron[rows]]  # [R, n_in, T]; every tap of a unit reads values within the unit's bounds
        p, q, l1v = inf.p[rows], inf.q[rows], inf.l1v[rows]
        Hin = e.H[l].view(1, -1, 1)
        if inf.product:
            U = Hin + e_prev
            # the univariate layer's input range on each side of 0: the box itself for l = 0, else |h| + e
            up_dn = ((e.hi.clamp(min=0).view(1, -1, 1), (-e.lo).clamp(min=0).view(1, -1, 1))
                     if t.input_of(l) < 0 else (U, U))
            E, lip, gap = e.first.product_error(p, q, l1v, w, U, up_dn, a_scale(e, l), inf.mom[rows])
            err = (E + lip * e_prev).sum((1, 2))
            own, coef = (E - gap * e_prev).sum((1, 2)), (lip + gap).sum((1, 2))
        else:
            err = ((p - w).abs() * Hin).sum((1, 2)) + e_prev * l1v.sum((1, 2))
            own, coef = ((p - w).abs() * Hin).sum((1, 2)), l1v.sum((1, 2))
        err = err + inf.bias_err[rows]
        act = t.activations[l] if l < t.depth - 1 else None
        M = 1.0 if act is None else acts_mod.get(act).lip
        add = t.add_of(l)
        e_add = e_out[add["from"]] if add is not None else 0.0  # the residual branch's error adds
        own_l.append(M * float((own + inf.bias_err[rows]).max()))
        amp_l.append(M * float(coef.max()))
        e_out[l] = M * (float(err.max()) + e_add)
        errs.append(e_out[l])
    return Certificate(e_out[t.depth - 1], errs, own_l, amp_l)


def unresolved_per_layer(e) -> list[dict]:
    """Per target layer: weight and bias instances left outside their tolerance after every growth round."""
    out = []
    for k in sorted(e.ledgers):
        inf, C = e.ledgers[k], e.src.layers[k]
        rows = C.copy_row_index()
        ok = inf.ok[rows]
        if inf.tl == 0 and len(e.const_inputs):  # folded inputs have no weights to build
            ok[:, e.const_inputs] = True
        bad_b = ~inf.bias_ok[rows]
        out.append({"weights": int((~ok).sum()), "biases": int(bad_b.sum()),
                    "max_bias_error": float(inf.bias_err[rows][bad_b].max()) if bad_b.any() else 0.0})
    return out


def sensitivities(t, amp: list[float]) -> list[float]:
    """d(final bound) / d(error added at layer l's output): products of the later amplifications
    along every path (a chain: the product of the amp of all later layers)."""
    sens = [0.0] * t.depth
    sens[-1] = 1.0
    for c in range(t.depth - 1, -1, -1):
        src = t.input_of(c)
        if src >= 0:
            sens[src] += sens[c] * amp[c]
        add = t.add_of(c)
        if add is not None and add["from"] >= 0:
            act = t.activations[c] if c < t.depth - 1 else None
            sens[add["from"]] += sens[c] * (1.0 if act is None else acts_mod.get(act).lip)
    return sens


def retune(layer_eps: list[float], t, cert: Certificate, goal: float) -> list[float]:
    """New per-layer tolerances: each layer's share of the certificate (its own error times the
    amplification of every layer after it) scaled to an equal part of ``goal``."""
    L = len(layer_eps)
    sens = sensitivities(t, cert.amp)
    out = []
    for l in range(L):
        contrib = cert.own[l] * sens[l]
        f = (goal / L) / max(contrib, 1e-300)
        out.append(layer_eps[l] * min(2.0, max(f, 1e-4)))
    return out
