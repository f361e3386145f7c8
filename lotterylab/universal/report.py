"""A universal ticket's result record and figures (drawn again from ``result.json`` alone)."""

from __future__ import annotations

from pathlib import Path

import torch

from .. import plots
from .ticket import UniversalTicket

MAX_CURVES = 8


def curves(ut: UniversalTicket, points: int = 400) -> dict:
    """Exact basis vs ticket along the curve ``x_i = lo + (hi - lo) s^i`` (i = 1..dim, s in [0, 1]: every
    coordinate moves, at different speeds), first MAX_CURVES outputs."""
    lo, hi = ut.basis.domain
    s = torch.linspace(0, 1, points, dtype=torch.float64)
    x = lo + (hi - lo) * s.unsqueeze(1) ** torch.arange(1, ut.basis.dim + 1, dtype=torch.float64)
    n = min(MAX_CURVES, len(ut.basis.features))
    return {"s": s.tolist(), "names": ut.basis.features[:n], "exact": ut.basis.exact(x)[:, :n].tolist(),
            "ticket": ut.features(x)[:, :n].tolist()}


def figures(result: dict, out) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    c, rep = result["curves"], result["report"]
    label = "x" if rep["dim"] == 1 else "s, on the curve x_i = low + (high - low) s^i"
    paths = [plots.basis_curves(c["s"], c["exact"], c["ticket"], c["names"], out / "universal_basis.png",
                                f"{rep['family']} basis, dim {rep['dim']}: {rep['ticket_parameters']:,} of "
                                f"{rep['source_parameters']:,} source parameters kept", label)]
    tb = result.get("task_batch")
    if tb:
        paths.append(plots.error_histogram(tb["errors"], tb["eps"], out / "readout_errors.png",
                                           f"{tb['tasks']} random tasks, one linear readout each: "
                                           f"{100 * tb['within_eps']:.1f}% within eps"))
    return paths


def summary(result: dict) -> list[str]:
    rep = result["report"]
    lines = [f"universal {rep['family']} ticket, dim {rep['dim']}: {rep['ticket_parameters']:,} of "
             f"{rep['source_parameters']:,} source parameters kept; {len(rep['universal']['basis']['features'])} "
             f"features; certificate {rep['certificate']:.3g} (eps {rep['eps']:g}), sampled error "
             f"{rep['sampled_error']['max']:.3g}"]
    tb = result.get("task_batch")
    if tb:
        lines.append(f"  {tb['tasks']} random tasks: {100 * tb['within_eps']:.1f}% within eps; sup error median "
                     f"{tb['median']:.3g}, max {tb['max']:.3g}; readout {tb['fit_us_per_task']:.0f} us per task")
    cl = result.get("classification")
    if cl:
        r = cl["readouts"]
        lines.append("  " + f"{result['dataset']} via PCA-{cl['pca_components']}: test accuracy " + ", ".join(
            f"{k} {100 * v['test_accuracy']:.2f}%" for k, v in r.items()))
    return lines
