"""Uses of one universal ticket: a batch of random regression tasks and a real classification task.

``task_batch``: ``n`` random members of the ticket's family (:mod:`.tasks`), every readout fitted in
one least-squares solve on a random sample, each task's sup error measured on a fresh dense grid.

``classification``: images projected by PCA onto ``dim`` components (computed on training images,
deterministic: eigenvectors of the covariance, signs fixed), each component mapped onto the
ticket's domain by its 0.5 % / 99.5 % training quantiles (values beyond are clipped), then a linear
least-squares readout of one-hot labels (ridge picked on the validation split) on

* the ticket's features,
* the raw projection (a linear classifier on the same inputs),
* the *unpruned* source (the same random network, untrained: what pruning bought),
* random ReLU features ``relu(W z + b)`` with as many parameters as the ticket keeps.
"""

from __future__ import annotations

import time

import torch

from .basis import grid
from .tasks import sample_tasks
from .ticket import UniversalTicket, least_squares

RIDGES = (0.0, 1e-8, 1e-6, 1e-4, 1e-2)
QUANTILE = 0.005


def task_batch(ut: UniversalTicket, n: int = 1000, seed: int = 0, fit_points: int = 4000,
               grid_points: int = 20_000, ridge: float = 0.0, lipschitz: float = 1.0) -> dict:
    tasks = sample_tasks(ut.basis, n, seed, lipschitz)
    g = torch.Generator().manual_seed(int(seed) + 1)
    lo, hi = ut.basis.domain
    xf = lo + (hi - lo) * torch.rand(fit_points, ut.basis.dim, generator=g, dtype=torch.float64)
    yf = tasks(xf)
    t0 = time.perf_counter()
    readout = ut.fit_readout(xf, yf, ridge=ridge)
    t_fit = time.perf_counter() - t0
    xg = grid(ut.basis, points=grid_points, seed=int(seed) + 2)
    err = ut.readout_error(readout, xg, tasks(xg))
    eps = ut.report["eps"]
    return {"tasks": n, "fit_points": fit_points, "grid_points": len(xg), "ridge": ridge, "eps": eps,
            "within_eps": float((err <= eps).double().mean()), "median": float(err.median()),
            "max": float(err.max()), "fit_s": t_fit, "fit_us_per_task": 1e6 * t_fit / n,
            "errors": err.tolist()}


def _pca(x: torch.Tensor, dim: int):
    mean = x.mean(0)
    xc = x - mean
    vals, vecs = torch.linalg.eigh(xc.T @ xc / len(x))
    top = vecs[:, torch.argsort(vals, descending=True)[:dim]]
    top = top * torch.sign(top.gather(0, top.abs().argmax(0, keepdim=True)))  # signs fixed: largest entry > 0
    return mean, top


def _ridge_readout(ftr, ytr, fva, yva, classes):
    """One-hot least squares (:func:`.ticket.least_squares`); the ridge with the best validation accuracy."""
    Y = torch.nn.functional.one_hot(ytr, classes).double()
    best = None
    for r in RIDGES:
        readout = least_squares(ftr, Y, r)
        acc = float(readout(fva).argmax(1).eq(yva).double().mean())
        if best is None or acc > best[0]:
            best = (acc, readout)
    return best[1].ridge, lambda f: best[1](f).argmax(1), best[0]


def classification(ut: UniversalTicket, splits, seed: int = 0, pca_examples: int = 20_000) -> dict:
    """Test accuracy of a linear readout on the ticket's features of a PCA projection (see module)."""
    dim = ut.basis.dim
    lo, hi = ut.basis.domain
    ys = {k: getattr(splits, k).y for k in ("train", "val", "test")}
    n_pca = min(pca_examples, len(splits.train))
    mean, comps = _pca(splits.train.take(n_pca, seed, "universal.pca").x.reshape(n_pca, -1).double(), dim)
    # projections in float32 (images are float32; 60k x 784 in float64 would be half a gigabyte), then float64
    z = {k: ((getattr(splits, k).x.reshape(len(ys[k]), -1) - mean.float()) @ comps.float()).double() for k in ys}
    qlo = torch.quantile(z["train"][:n_pca], QUANTILE, dim=0)
    qhi = torch.quantile(z["train"][:n_pca], 1 - QUANTILE, dim=0)
    u = {k: (lo + (hi - lo) * (v - qlo) / (qhi - qlo)).clamp(lo, hi) for k, v in z.items()}
    kept = ut.counts()["ticket_parameters"]
    width = max(1, kept // (dim + 2))
    g = torch.Generator().manual_seed(int(seed) + 7)
    W = 2 * torch.rand(dim, width, generator=g, dtype=torch.float64) - 1
    b = 2 * torch.rand(width, generator=g, dtype=torch.float64) - 1
    source = ut.ticket.source().double().eval()

    def dense_source(x):
        with torch.no_grad():
            out = torch.cat([source(x[i:i + 65536]) for i in range(0, len(x), 65536)])
        return out[:, ut.columns] if ut.columns is not None else out

    makers = {"ticket": ut.features, "raw_projection": lambda x: x, "unpruned_source": dense_source,
              "random_features": lambda x: torch.relu(x @ W + b)}
    out = {"pca_components": dim, "pca_examples": n_pca, "clipped_fraction_test": float(
        ((z["test"] < qlo) | (z["test"] > qhi)).double().mean()), "random_features_width": width, "readouts": {}}
    for name, f in makers.items():
        t0 = time.perf_counter()
        feats = {k: f(v) for k, v in u.items()}
        ridge, predict, val_acc = _ridge_readout(feats["train"], ys["train"], feats["val"], ys["val"], splits.num_classes)
        acc = float(predict(feats["test"]).eq(ys["test"]).double().mean())
        out["readouts"][name] = {"features": int(feats["train"].shape[1]), "ridge": ridge, "val_accuracy": val_acc,
                                 "test_accuracy": acc, "seconds": time.perf_counter() - t0}
    return out
