"""Planted tickets: a constructed ticket hidden in its random source, as ground truth for finders.

Fischer & Burkholz (PlantNSeek, "Plant 'n' Seek: Can You Find the Winning Ticket?", ICLR 2022)
planted hand-built ReLU tickets into random networks to test whether pruning methods recover them.
Any constructed ticket is such a plant: a random source (regenerated from its seed), a mask, and a
known function (the masked source, within the construction's tolerance of its target). A
:class:`PlantedProblem` is that source, its mask and a teacher task whose labels come from the
planted subnetwork; :func:`score` compares any found mask with the planted one.

Two tasks: ``classification`` (labels = the teacher's argmax) and ``regression`` (targets = the
teacher's outputs, trained and scored with squared error), on inputs drawn from the ticket's domain
box or on real images. Scoring: per-layer precision and recall of kept weights
(:func:`score`) and :meth:`PlantedProblem.reaches` (does a found network do what the plant does).
Every finder runs on a planted source (``find.pai.prune_at_init``, ``find.imp.IMP`` and
``find.edge_popup.edge_popup_mask`` take any ``nn.Module``); :mod:`lotterylab.planted_study` runs
them all on plants of several families and activations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from . import rng
from .data import DataSplits, Split
from .masks import Mask
from .tickets import Ticket

TASKS = ("classification", "regression")


@dataclass
class PlantedProblem:
    """A ticket planted in its source, and the teacher task it labels."""

    ticket: Ticket
    data: DataSplits
    task: str = "classification"
    info: dict = field(default_factory=dict)

    def source(self, device=None) -> nn.Module:
        """A fresh copy of the random source: the finders' starting network (weights as drawn)."""
        return self.ticket.source(device)

    def teacher(self, device=None) -> nn.Module:
        """The planted subnetwork, whose outputs label the task."""
        return self.ticket.network(device).eval()

    @property
    def planted(self) -> Mask:
        """The planted mask on the source's weights (the finders' pruning targets; biases aside).
        (A mask has its parameter's shape: no source needs to be built for this.)"""
        return Mask({k: v for k, v in self.ticket.masks.items() if v.dim() > 1})

    def score(self, found: Mask) -> dict:
        return score(found, self.planted)

    @torch.no_grad()
    def reaches(self, model: nn.Module, tol: float = 0.01) -> dict:
        """Does a found network (a masked source, or a trained ticket) do what the planted one does?

        Classification: test accuracy on the teacher's labels (the teacher's own is 1) and
        cross-entropy beside the teacher's; ``reaches``: accuracy >= 1 - ``tol``. Regression: the
        squared error to the teacher's outputs relative to their variance (``relative_loss``, 0 for
        the teacher, 1 for a constant at the mean); ``reaches``: relative_loss <= ``tol``."""
        from .training import evaluate

        mine = evaluate(model, self.data.test)
        ref = evaluate(self.teacher(), self.data.test)
        out = {"accuracy": mine["accuracy"], "loss": mine["loss"], "teacher_accuracy": ref["accuracy"],
               "teacher_loss": ref["loss"]}
        if self.task == "regression":
            y = self.data.test.y
            spread = float((y - y.mean(0)).square().sum(1).mean())
            out["relative_loss"] = mine["loss"] / spread if spread > 0 else float("inf")
        out["reaches"] = reaches(out, self.task, tol)
        return out


def _inputs_in_box(ticket: Ticket, n: int, seed: int, stream: str) -> torch.Tensor:
    dom = ticket.report.get("domain")
    if not isinstance(dom, dict) or "low" not in dom:
        raise ValueError("the ticket does not record its domain box (report['domain']); pass inputs= a data set")
    lo = torch.tensor(dom["low"], dtype=torch.float32)
    hi = torch.tensor(dom["high"], dtype=torch.float32)
    shape = tuple(ticket.arch.get("input_shape") or lo.shape)
    u = rng.uniform(seed, rng.stream_id(stream), (n, *shape), 0.0, 1.0, torch.device("cpu"))
    if lo.numel() == u[0].numel():  # one bound per input
        return lo.view(1, *shape) + u * (hi - lo).view(1, *shape)
    view = (1, -1) + (1,) * (len(shape) - 1)  # per channel
    return lo.view(view) + u * (hi - lo).view(view)


@torch.no_grad()
def _outputs(teacher: nn.Module, x: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    return torch.cat([teacher(x[i:i + batch]) for i in range(0, len(x), batch)])


def plant(ticket: Ticket, task: str = "classification", inputs: DataSplits | None = None, n_train: int = 10_000,
          n_val: int = 1_000, n_test: int = 2_000, seed: int = 0) -> PlantedProblem:
    """The planted problem of ``ticket``: its source, its mask and a teacher task.

    ``inputs``: a data set whose images are relabelled by the teacher (its sizes are kept), or None:
    ``n_train`` / ``n_val`` / ``n_test`` points drawn uniformly from the ticket's domain box (seeded).
    ``task="classification"``: the label of x is the teacher's argmax (as many classes as outputs);
    ``task="regression"``: its targets are the teacher's outputs (float; the training loop and every
    finder then use squared error, :func:`lotterylab.training.task_loss`). ``data.num_classes`` is
    the number of outputs either way.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    for name, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{name} must be a positive integer, got {n!r}")
    teacher = ticket.network().eval()
    if inputs is None:
        xs = [_inputs_in_box(ticket, n, seed, f"planted.{part}") for part, n in
              (("train", n_train), ("val", n_val), ("test", n_test))]
        name, shape = "planted-box", tuple(xs[0].shape[1:])
    else:
        xs = [inputs.train.x, inputs.val.x, inputs.test.x]
        name, shape = f"planted-{inputs.name}", tuple(inputs.input_shape)
    try:
        outs = [_outputs(teacher, x) for x in xs]
    except RuntimeError as e:
        raise ValueError(f"the ticket's network does not take these inputs ({e}); give inputs of its input shape "
                         f"{ticket.arch.get('input_shape')}") from None
    classes = int(outs[0].shape[1])
    weights = Mask({k: v for k, v in ticket.masks.items() if v.dim() > 1})
    # the density of the planted weights: what the finders prune (biases are not theirs)
    info = {"classes": classes, "planted_density": weights.density, "planted_density_with_biases": ticket.masks.density,
            "source_parameters": ticket.counts()["source_parameters"]}
    if task == "classification":
        if classes < 2:
            raise ValueError("a classification task needs a ticket with at least 2 outputs")
        ys = [o.argmax(1) for o in outs]
        hist = torch.bincount(ys[0], minlength=classes)
        info["train_label_share"] = (hist.double() / hist.sum()).tolist()
    else:
        ys = outs
        info["train_target_std"] = outs[0].std(0).tolist()
    data = DataSplits(name, Split(xs[0], ys[0]), Split(xs[1], ys[1]), Split(xs[2], ys[2]), classes, shape,
                      [0.0], [1.0])
    return PlantedProblem(ticket, data, task, info)


def reaches(metrics: dict, task: str, tol: float) -> bool:
    """The criterion of :meth:`PlantedProblem.reaches` on its recorded figures (so a stored result can
    be judged again at another ``tol``): classification accuracy >= the teacher's - tol; regression
    relative squared error <= tol (None, i.e. not finite: no)."""
    if task == "regression":
        rel = metrics.get("relative_loss")
        return rel is not None and rel <= tol
    return metrics["accuracy"] >= metrics["teacher_accuracy"] - tol


def score(found: Mask, planted: Mask) -> dict:
    """Precision and recall of the kept weights of ``found`` against ``planted``, per layer and over all
    layers both masks cover. A random mask at density d has recall ~ d and precision ~ the planted
    density; the planted mask itself has both 1."""
    common = [k for k in planted if k in found]
    if not common:
        raise ValueError(f"the masks share no parameter (planted: {list(planted)[:4]}, found: {list(found)[:4]})")
    layers, tp_all, f_all, p_all, n_all = {}, 0, 0, 0, 0
    for k in common:
        f, p = found[k].bool(), planted[k].bool()
        if f.shape != p.shape:
            raise ValueError(f"{k}: found mask of shape {tuple(f.shape)}, planted {tuple(p.shape)}")
        tp, nf, npl = int((f & p).sum()), int(f.sum()), int(p.sum())
        layers[k] = {"precision": tp / nf if nf else None, "recall": tp / npl if npl else None,
                     "found_density": nf / f.numel(), "planted_density": npl / p.numel(), "kept_both": tp}
        tp_all, f_all, p_all, n_all = tp_all + tp, f_all + nf, p_all + npl, n_all + f.numel()
    return {"precision": tp_all / f_all if f_all else None, "recall": tp_all / p_all if p_all else None,
            "found_density": f_all / n_all, "planted_density": p_all / n_all, "layers": layers}
