"""The lottery literature's standard figures, written to PNG with matplotlib (Agg, no display).

Series are ``{label: [(density, values), ...]}`` where ``values`` is one number or a list over
seeds (plotted as mean with min-max error bars).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: works on headless machines and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .io import atomic_write_bytes  # noqa: E402


def _stats(values):
    v = np.atleast_1d(np.asarray(values, dtype=float))
    return v.mean(), v.mean() - v.min(), v.max() - v.mean()


def _save(fig, path) -> Path:
    import io

    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=120, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _density_axis(ax, densities):
    """Log axis in one unit (percent kept), ticks at the measured densities, thinned so labels never overlap."""
    from matplotlib.ticker import NullFormatter, NullLocator

    ax.set_xscale("log")
    ax.invert_xaxis()  # read left to right as pruning proceeds
    ticks: list[float] = []
    for t in sorted({float(f"{100 * d:.3g}") for d in densities if d > 0}, reverse=True):
        if not ticks or np.log10(ticks[-1] / t) >= 0.12:  # at least ~1/8 decade apart
            ticks.append(t)
    ax.xaxis.set_minor_locator(NullLocator())  # matplotlib's own minor labels are fractions: never mixed in
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks([t / 100 for t in ticks])
    ax.set_xticklabels([f"{t:g}" for t in ticks], rotation=45 if len(ticks) > 8 else 0)
    ax.set_xlabel("density (% of weights kept, log scale)")


def _series_plot(series: dict, path, title: str, ylabel: str, scale: float = 1.0) -> Path:
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    all_d = []
    for label, points in series.items():
        points = sorted(points, key=lambda p: -p[0])
        if not points:
            continue
        d = [p[0] for p in points]
        stats = [_stats(p[1]) for p in points]
        m = [scale * s[0] for s in stats]
        err = [[scale * s[1] for s in stats], [scale * s[2] for s in stats]]
        ax.errorbar(d, m, yerr=err, marker="o", ms=3, capsize=2, label=label)
        all_d += d
    if all_d:
        _density_axis(ax, all_d)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def accuracy_vs_density(series: dict, path, title: str = "accuracy vs density") -> Path:
    """Test accuracy (in %) against density on a log axis."""
    return _series_plot(series, path, title, "test accuracy (%)", scale=100.0)


def learning_speed_vs_density(series: dict, path, title: str = "learning speed vs density") -> Path:
    """Iteration of minimum validation loss (lower = learns faster) against density."""
    return _series_plot(series, path, title, "iteration of min. validation loss")


def mask_distance_matrix(distances, path, labels=None, title: str = "early-bird mask distance") -> Path:
    """Heat map of pairwise normalised Hamming distances between masks (You et al. 2020, Fig. 2)."""
    d = np.asarray(distances, dtype=float)
    fig, ax = plt.subplots(figsize=(5.0, 4.4))
    im = ax.imshow(d, cmap="viridis", vmin=0.0, vmax=max(float(d.max()), 1e-9))
    fig.colorbar(im, ax=ax, label="normalised Hamming distance")
    if labels is not None:
        step = max(1, len(labels) // 10)
        ax.set_xticks(range(0, len(labels), step))
        ax.set_xticklabels([labels[i] for i in range(0, len(labels), step)], rotation=45, fontsize=7)
        ax.set_yticks(range(0, len(labels), step))
        ax.set_yticklabels([labels[i] for i in range(0, len(labels), step)], fontsize=7)
    ax.set_xlabel("check (epoch)")
    ax.set_ylabel("check (epoch)")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def heatmap(values, path, xlabels, ylabels, xlabel: str, ylabel: str, title: str, cbar: str,
            annotate: str | None = None, vmin=None, vmax=None, size=(6.4, 4.4)) -> Path:
    """``values[row][col]`` (None: blank); ``annotate``: a format such as ``"{:.2f}"`` written in each cell."""
    v = np.asarray([[np.nan if x is None else x for x in row] for row in values], dtype=float)
    fig, ax = plt.subplots(figsize=size)
    im = ax.imshow(v, cmap="magma_r", aspect="auto", origin="lower", vmin=vmin, vmax=vmax)
    fig.colorbar(im, ax=ax, label=cbar)
    if annotate:
        lo, hi = np.nanmin(v) if np.isfinite(v).any() else 0.0, np.nanmax(v) if np.isfinite(v).any() else 1.0
        mid = (lo if vmin is None else vmin) / 2 + (hi if vmax is None else vmax) / 2
        for (i, j), x in np.ndenumerate(v):
            if np.isfinite(x):
                ax.text(j, i, annotate.format(x), ha="center", va="center", fontsize=6,
                        color="white" if x > mid else "black")
    ax.set_xticks(range(len(xlabels)))
    ax.set_xticklabels(xlabels, rotation=45, fontsize=7)
    ax.set_yticks(range(len(ylabels)))
    ax.set_yticklabels(ylabels, fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def training_curves(histories: dict, path, title: str = "training", key: str = "test_accuracy") -> Path:
    """``{label: history}`` (a training result's ``history``): ``key`` against iteration."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    pct = key.endswith("accuracy")  # accuracies in percent, as everywhere else
    for label, hist in histories.items():
        ax.plot([h["iteration"] for h in hist], [(100 if pct else 1) * h[key] for h in hist], label=label)
    ax.set_xlabel("iteration")
    ax.set_ylabel(key.replace("_", " ") + (" (%)" if pct else ""))
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def threshold_plot(found, fit: dict, bound: list[dict], cells: list[dict], sizes, its, path,
                   level: float | None = None) -> Path:
    """Left: measured T*(m) against log m with the fitted line and the bound's shape (scaled).
    Right: dense (dashed) and GFS-pruned (solid) training loss against pre-training iterations."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11.0, 4.0))
    if found:
        ms = np.array([m for m, _ in found], dtype=float)
        a.plot(ms, [t for _, t in found], "o", label="measured T*(m)")
        if np.isfinite(fit.get("slope", np.nan)):
            grid = np.geomspace(ms.min(), ms.max(), 50)
            a.plot(grid, fit["intercept"] + fit["slope"] * np.log(grid), "-",
                   label=f"fit: {fit['slope']:.0f} * ln m + {fit['intercept']:.0f} (R² {fit['r2']:.2f})")
    scaled = [(x["m"], x["T_star_scaled"]) for x in bound if "T_star_scaled" in x]
    if scaled:
        a.plot([m for m, _ in scaled], [t for _, t in scaled], "s--", ms=3,
               label="bound shape (1/(η λ0)) ln m, scaled")
    a.set_xscale("log")
    a.set_xlabel("training subset size m (log)")
    a.set_ylabel("pre-training iterations")
    a.set_title("pre-training needed before GFS works", fontsize=10)
    a.grid(alpha=0.3)
    if a.get_legend_handles_labels()[0]:
        a.legend(fontsize=7)
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(sizes)))
    for m, col in zip(sizes, colors):
        rows = sorted((c for c in cells if c["m"] == m), key=lambda c: c["t"])
        t = [max(c["t"], 1) for c in rows]
        b.plot(t, [c["pruned_train_loss"] for c in rows], "-", color=col, label=f"m={m}")
        b.plot(t, [c["dense_train_loss"] for c in rows], "--", color=col, lw=0.8)
    if level is not None:
        b.axhline(level, color="k", lw=0.8, ls=":", label=f"T* level {level:g}")
    b.set_xscale("log")
    b.set_yscale("log")
    b.set_xlabel("pre-training iterations t (t=0 drawn at 1)")
    b.set_ylabel("training loss (solid: pruned, dashed: dense)")
    b.grid(alpha=0.3)
    b.legend(fontsize=7)
    return _save(fig, path)


def construction(report: dict, path, verify: dict | None = None, test: dict | None = None) -> Path:
    """A constructed ticket at a glance: parameter counts (target, ticket, source; log scale) and
    the error bounds per target layer (certificate after each layer, the sampled/attacked error
    and the test-set error beside eps or eps_param)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11.0, 4.0))
    p = report["parameters"]
    names = ["target", "ticket", "source"]
    vals = [p["target"], p["ticket"], p["source"]]
    a.bar(names, vals, color=["#4c72b0", "#55a868", "#c44e52"])
    a.set_yscale("log")
    for i, v in enumerate(vals):
        a.text(i, v, f"{v:,}", ha="center", va="bottom", fontsize=8)
    a.set_ylabel("parameters (log)")
    a.set_title(f"{report['mode']} ticket: {p['ticket_per_target']:.1f}x the target's parameters", fontsize=10)
    per = report.get("certificate_per_layer") or []
    if per:
        b.plot(range(1, len(per) + 1), per, "o-", label="certificate after layer")
    lines = []
    if report.get("eps") is not None and report.get("guarantee_mode"):
        lines.append(("eps", report["eps"], "k"))
    if verify:
        lines.append(("sampled + attacked error", verify["sup_error"], "tab:orange"))
    if test:
        lines.append(("max error on the test set", test["max_output_error"], "tab:green"))
    for label, v, col in lines:
        b.axhline(v, ls="--", color=col, label=f"{label} {v:.3g}")
    b.set_yscale("log")
    b.set_xlabel("target layer")
    b.set_ylabel("sup |target - ticket| bound")
    b.set_title("error bounds (eps_param {:g})".format(report.get("eps_param") or 0), fontsize=10)
    b.grid(alpha=0.3)
    if b.get_legend_handles_labels()[0]:
        b.legend(fontsize=7)
    return _save(fig, path)


def basis_curves(s, exact, ticket, names, path, title: str, xlabel: str = "x") -> Path:
    """Exact basis functions (lines) against a ticket's features (dashed) along one path; the error below."""
    exact, ticket = np.asarray(exact, dtype=float), np.asarray(ticket, dtype=float)
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(6.4, 5.6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for j, name in enumerate(names):
        line, = ax.plot(s, exact[:, j], lw=1.2, label=name)
        ax.plot(s, ticket[:, j], "--", lw=1.0, color=line.get_color())
        ax2.plot(s, np.abs(ticket[:, j] - exact[:, j]), lw=0.8, color=line.get_color())
    ax.set_title(title, fontsize=10)
    ax.set_ylabel("basis (solid) / ticket (dashed)")
    ax.legend(fontsize=6, ncol=2)
    ax2.set_yscale("log")
    ax2.set_ylabel("|ticket - basis|")
    ax2.set_xlabel(xlabel)
    return _save(fig, path)


def error_histogram(errors, eps: float, path, title: str, xlabel: str = "sup error on a fresh grid") -> Path:
    """Histogram of per-task errors with the guarantee ``eps`` marked."""
    e = np.asarray(errors, dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    lo, hi = max(e.min(), 1e-12), max(e.max(), eps)
    ax.hist(e, bins=np.geomspace(lo / 1.2, hi * 1.2, 40), color="tab:blue", alpha=0.8)
    ax.axvline(eps, color="tab:red", lw=1.2, label=f"eps = {eps:g}")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("tasks")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)
