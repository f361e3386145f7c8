"""The planted study's table (CSV, JSON, Markdown) and heat maps, from its ``study.json``."""

from __future__ import annotations

from pathlib import Path

from .io import atomic_write_bytes

COLUMNS = ("family", "activation", "finder", "factor", "density", "found_density", "precision", "recall",
           "untrained_score", "trained_score", "reaches", "seconds")


def score_name(task: str) -> str:
    return "relative squared error" if task == "regression" else "accuracy on the teacher's labels"


def _score(r: dict | None, task: str):
    if r is None:
        return None
    return r["relative_loss"] if task == "regression" else r["accuracy"]


def table_rows(res: dict) -> list[dict]:
    from .planted_study import reached

    task = res["config"]["task"]
    return [{"family": r["family"], "activation": r["activation"], "finder": r["finder"], "factor": r["factor"],
             "density": r["density"], "found_density": r["found_density"], "precision": r["precision"],
             "recall": r["recall"], "untrained_score": _score(r["untrained"], task),
             "trained_score": _score(r.get("trained"), task), "reaches": reached(r),
             "seconds": r["seconds"]} for r in res["rows"]]


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_report(res: dict, folder: Path) -> list[Path]:
    from . import plots
    from .sweep import write_table

    rows = table_rows(res)
    write_table(folder, rows)
    md = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    md += ["| " + " | ".join(_fmt(r[c]) for c in COLUMNS) + " |" for r in rows]
    atomic_write_bytes(folder / "table.md", ("\n".join(md) + "\n").encode())

    # heat maps: finders (rows) x problem and density factor (columns)
    task = res["config"]["task"]
    probs = list(res["problems"])
    finders = list(dict.fromkeys(r["finder"] for r in res["rows"]))
    ks = sorted({r["factor"] for r in res["rows"] if r["factor"] is not None})
    cols = [(p, k) for p in probs for k in ks]
    at = {(f"{r['family']}_{r['activation']}", r["finder"], r["factor"]): r for r in res["rows"]}

    def value(p, f, k, what):
        r = at.get((p, f, k)) or at.get((p, f, None))  # references: the same in every column
        if r is None:
            return None
        if what == "recall":
            return r["recall"]
        from .planted_study import result_of
        return _score(result_of(r), task)

    xl = [f"{p} {k:g}x" for p, k in cols]
    out = []
    for what, label, fmt in (("recall", "recall of the planted weights", "{:.2f}"),
                             ("score", score_name(task), "{:.2f}")):
        grid = [[value(p, f, k, what) for p, k in cols] for f in finders]
        vmax = 1.0 if what == "recall" or task != "regression" else None
        out.append(plots.heatmap(grid, folder / f"planted_{what}.png", xl, finders,
                                 "problem (family_activation) and density (x the planted density)", "finder",
                                 f"planted tickets: {label} (trained where the finder trains)", label,
                                 annotate=fmt, vmin=0.0, vmax=vmax, size=(max(6.4, 0.5 * len(cols) + 3), 4.6)))
    return out
