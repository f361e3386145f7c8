"""Check a ticket against its target: the largest output difference over the input domain.

Two lower bounds on the true supremum, computed in float64 (the ticket's float32 values are
exact float64 numbers, so this measures the ticket itself, not rounding):

* ``samples`` random points of the box, plus its corners (all of them for <= 12 inputs) and the
  points with one coordinate at a bound;
* ``attack_steps`` of projected signed-gradient ascent on ``max_o |target(x) - ticket(x)|`` from
  the worst points found, with a decaying step, projected back onto the box.

The construction's certificate (an upper bound) is reported beside them when the ticket has one.
"""

from __future__ import annotations

import itertools
import math
import time

import torch
from torch import nn

from .tickets import Ticket


def _domain(domain, n0: int, shape=None):
    """Per-input bounds; for image inputs ``shape = (C, H, W)`` the box is per channel, spread over pixels."""
    from .construct.inputs import domain_box

    if shape is None:
        return domain_box(domain, n0)
    lo, hi = domain_box(domain, shape[0], channels=True)
    hw = shape[1] * shape[2]
    return lo.repeat_interleave(hw), hi.repeat_interleave(hw)


@torch.no_grad()
def _err(f, g, x):
    return (f(x) - g(x)).abs().amax(dim=1)


def verify(target: nn.Module, ticket: Ticket | nn.Module, domain=(-1.0, 1.0), samples: int = 100_000,
           attack_steps: int = 200, attack_starts: int = 32, seed: int = 0, batch: int = 8192, device=None,
           input_shape=None, probes: bool = True) -> dict:
    """Largest |target(x) - ticket(x)| found over the box ``domain`` (see module docs).
    ``probes=False``: random points only (no corners, faces or impulses; with ``attack_steps=0``, a
    quick sampled check).

    Image targets (``input_shape`` or a convolutional ticket's own) are also probed with
    border-heavy inputs: constant images and single-pixel impulses, corners included."""
    t0 = time.perf_counter()
    device = torch.device(device) if device is not None else torch.device("cpu")
    net = _network(ticket, device)
    f = _as_float64(target, device)
    g = _as_float64(net, device)
    batch = _batch_for(g, batch)
    shape = None
    if input_shape is not None:
        shape = tuple(int(s) for s in input_shape)
    elif isinstance(ticket, Ticket) and ticket.arch.get("name") == "source_net":
        shape = tuple(ticket.arch["input_shape"])
    if shape is not None:  # image inputs: points are drawn flat and reshaped
        n0 = shape[0] * shape[1] * shape[2]
        f0, g0 = f, g
        f, g = (lambda x: f0(x.view(-1, *shape))), (lambda x: g0(x.view(-1, *shape)))
    else:
        n0 = next(p for p in target.parameters() if p.dim() == 2).shape[1]
    lo, hi = _domain(domain, n0, shape)
    lo, hi = lo.to(device), hi.to(device)
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def sample(n):
        u = torch.rand(n, n0, generator=gen, dtype=torch.float64).to(device)
        return lo + (hi - lo) * u

    # random points, in batches, keeping the worst (and the target's output range on them)
    worst_x, worst_e = [], []
    done = 0
    out_lo, out_hi = math.inf, -math.inf
    while done < samples:
        n = min(batch, samples - done)
        x = sample(n)
        with torch.no_grad():
            fx, gx = f(x), g(x)
        e = (fx - gx).abs().amax(dim=1)
        out_lo, out_hi = min(out_lo, float(fx.min())), max(out_hi, float(fx.max()))
        k = min(attack_starts, n)
        top = e.topk(k)
        worst_x.append(x[top.indices])
        worst_e.append(top.values)
        done += n
    # corners and faces
    special = []
    if probes:
        if n0 <= 12:
            special.append(torch.tensor(list(itertools.product((0.0, 1.0), repeat=n0)), dtype=torch.float64,
                                        device=device))
        else:
            n_corners = min(4096, max(256, samples))  # random corners, as many as the random points (<= 4096)
            special.append((torch.rand(n_corners, n0, generator=gen, dtype=torch.float64) > 0.5).double().to(device))
        eye = torch.eye(n0, dtype=torch.float64, device=device)
        mid = torch.full((1, n0), 0.5, dtype=torch.float64, device=device)
        special += [mid + 0.5 * eye, mid - 0.5 * eye, mid]
        if shape is not None:  # constant images at the box's bounds, impulses on a low / high background
            special += [torch.zeros(1, n0, dtype=torch.float64, device=device),
                        torch.ones(1, n0, dtype=torch.float64, device=device), eye, 1.0 - eye]
    for s in special:
        for c0 in range(0, len(s), batch):
            x = lo + (hi - lo) * s[c0:c0 + batch]
            e = _err(f, g, x)
            k = min(attack_starts, len(x))
            top = e.topk(k)
            worst_x.append(x[top.indices])
            worst_e.append(top.values)
    X, E = torch.cat(worst_x), torch.cat(worst_e)
    random_sup = float(E.max())
    # projected signed-gradient ascent from the worst starts
    starts = X[E.topk(min(attack_starts, len(E))).indices].clone()
    attack_sup = random_sup
    if attack_steps > 0:
        x = starts.clone().requires_grad_(True)
        width = (hi - lo)
        for step in range(attack_steps):
            with torch.enable_grad():
                e = (f(x) - g(x)).abs().amax(dim=1)
                (grad,) = torch.autograd.grad(e.sum(), x)
            lr = 0.05 * (1 - step / attack_steps) + 1e-3
            with torch.no_grad():
                x += lr * width * grad.sign()
                x.copy_(torch.maximum(torch.minimum(x, hi), lo))
                attack_sup = max(attack_sup, float(_err(f, g, x).max()))
    out = {"sup_error": max(random_sup, attack_sup), "sup_error_random": random_sup, "sup_error_attack": attack_sup,
           "output_range": out_hi - out_lo, "samples": samples, "attack_steps": attack_steps, "seconds": time.perf_counter() - t0}
    if isinstance(ticket, Ticket) and "certificate" in ticket.report:
        out["certificate"] = ticket.report["certificate"]
        out["eps"] = ticket.report.get("eps")
        out["within_certificate"] = out["sup_error"] <= out["certificate"] * (1 + 1e-9) + 1e-12
    return out


@torch.no_grad()
def float32_error(target: nn.Module, ticket: Ticket, domain=(-1.0, 1.0), samples: int = 512, seed: int = 0) -> float:
    """Largest |target(x) - ticket(x)| on ``samples`` seeded random points of ``domain`` when the
    ticket runs in float32 (its compact network, as a float32 deployment computes it), the target in
    float64. Everything else here measures the ticket in float64; a first layer of small input scale
    (linearised or moment-matched) can carry offsets that only float64 cancels."""
    net = ticket.compact(dtype=torch.float32)
    f = _as_float64(target, "cpu")
    shape = tuple(ticket.arch["input_shape"]) if ticket.arch.get("name") == "source_net" else None
    n0 = shape[0] * shape[1] * shape[2] if shape else next(p for p in target.parameters() if p.dim() == 2).shape[1]
    lo, hi = _domain(domain, n0, shape)
    gen = torch.Generator().manual_seed(seed)
    x = lo + (hi - lo) * torch.rand(samples, n0, generator=gen, dtype=torch.float64)
    if shape is not None:
        x = x.view(-1, *shape)
    return float((f(x) - net(x.float()).double()).abs().max())


class _SparseLinear(nn.Module):
    """A pruned Linear layer as a CSR matrix: a ticket keeps a few % of a very wide source, and a
    dense float64 product over it would cost 20-50x the work (and memory) of the kept entries."""

    def __init__(self, lin: nn.Linear, device):
        super().__init__()
        import warnings

        with warnings.catch_warnings():  # CSR is "beta" in torch; the matmul used here is stable
            warnings.simplefilter("ignore")
            self.W = lin.weight.detach().to(device=device, dtype=torch.float64).to_sparse_csr()
        self.b = (lin.bias.detach().to(device=device, dtype=torch.float64) if lin.bias is not None else
                  torch.zeros(lin.out_features, dtype=torch.float64, device=device))

    def forward(self, x):
        return (self.W @ x.reshape(x.shape[0], -1).T).T + self.b


def _network(ticket, device) -> nn.Module:
    """What to evaluate: a module as given; a constructed ticket's compact network (built from its
    kept entries alone: the huge source never exists); otherwise the masked source."""
    if not isinstance(ticket, Ticket):
        return ticket
    if ticket.arch.get("name") in ("source_mlp", "source_net"):
        return ticket.compact(device=device)
    return ticket.network(device)


def _as_float64(m: nn.Module, device, sparse_below: float = 0.2) -> nn.Module:
    """float64 copy for exact comparisons; Linear layers with density < ``sparse_below`` become CSR.
    A compact ticket network (float64 already, immutable buffers) is used as it is."""
    import copy

    from .compact import CompactMLP
    from .compact_net import CompactNet

    if isinstance(m, CompactMLP | CompactNet):  # CSR buffers cannot be copied: used as built, never converted
        b = m.layers[0].bias
        if b.dtype != torch.float64 or b.device != torch.device(device):
            raise ValueError(f"a compact network in {b.dtype} on {b.device} cannot be compared exactly on {device}: "
                             f"pass the Ticket itself, or ticket.compact(device=...) in float64 (the default)")
        return m.eval()

    sparse = {}
    for name, mod in m.named_modules():
        if isinstance(mod, nn.Linear) and float((mod.weight != 0).float().mean()) < sparse_below:
            sparse[name] = _SparseLinear(mod, device)
    if sparse:  # build the copy without duplicating the dense weights of the sparse layers
        m = copy.deepcopy(m)
        for name, new in sparse.items():
            parent, _, leaf = name.rpartition(".")
            setattr(m.get_submodule(parent) if parent else m, leaf, new)
    else:
        m = copy.deepcopy(m)
    m = m.to(device=device, dtype=torch.float64)
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


@torch.no_grad()
def _batch_for(net, batch: int) -> int:
    """Wide convolutional tickets: a batch of about 1 GiB of float64 maps (``batch`` at most)."""
    if hasattr(net, "bytes_per_example"):
        return max(1, min(batch, (1 << 30) // max(1, 3 * net.bytes_per_example())))
    return batch


def compare(target: nn.Module, network, split, batch: int = 2000, device=None) -> dict:
    """Target and ticket network (a module, or a Ticket: its compact network where it has one) on
    labelled data (e.g. the test set), in float64: accuracies, top-1 agreement and the largest
    output difference."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    f, g = _as_float64(target, device), _as_float64(_network(network, device), device)
    batch = _batch_for(g, batch)
    n = len(split)
    acc_t = acc_k = agree = 0
    err = 0.0
    for i in range(0, n, batch):
        x = split.x[i:i + batch].to(device=device, dtype=torch.float64)
        y = split.y[i:i + batch].to(device)
        ot, ok = f(x), g(x)
        pt, pk = ot.argmax(1), ok.argmax(1)
        acc_t += int((pt == y).sum())
        acc_k += int((pk == y).sum())
        agree += int((pt == pk).sum())
        err = max(err, float((ot - ok).abs().max()))
    n = max(n, 1)
    return {"target_accuracy": acc_t / n, "ticket_accuracy": acc_k / n, "agreement": agree / n,
            "max_output_error": err}
