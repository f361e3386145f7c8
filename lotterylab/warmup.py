"""Compile the numba kernels of the main paths into numba's on-disk cache, once, at set-up.

numba compiles a kernel on its first call and caches the machine code beside the source
(``lotterylab/__pycache__``). Without this, a fresh checkout's first construction paid the
compilation: ~28 s of the demo's ~26 s construction on the project's 2-core VM. ``scripts/setup``
runs ``python -m lotterylab.warmup`` whenever a kernel file changes. It runs small constructions
through the same code as real ones (depth L+1 with bias correction and scaled copy layers, as in
the demo; depth 2L; a small convolutional target), then the ticket's compact network, file,
verification and comparison, so every kernel meets the argument types real runs give it. What
this misses compiles on first use, as before; nothing depends on it but the first run's time.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from torch import nn


def run() -> float:
    """Run the small constructions; returns the seconds taken."""
    from . import construct
    from .data import Split
    from .tickets import load_ticket
    from .verification import compare, verify

    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    conv = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(3 * 16, 3))
    for net in (mlp, conv):
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        net.eval()
    x = torch.rand(64, 1, 4, 4, generator=g)
    split = Split(x, torch.zeros(len(x), dtype=torch.long))
    runs = [(mlp, dict(mode="L+1", eps_param=0.01, calibration=x[:32].flatten(1), copy_scale=0.3)),
            (mlp, dict(mode="2L", eps_param=0.01)),
            (conv, dict(mode="L+1", eps_param=0.02, input_shape=(1, 4, 4)))]
    with tempfile.TemporaryDirectory() as tmp:
        for net, kw in runs:
            ticket = construct(net, seed=0, domain=(0.0, 1.0), **kw)
            path = Path(tmp) / "ticket.safetensors"
            ticket.save(path)
            ticket = load_ticket(path)
            verify(net, ticket, (0.0, 1.0), samples=64, attack_steps=2, seed=0)
            compare(net, ticket, split)
    return time.perf_counter() - t0


if __name__ == "__main__":
    print(f"numba kernels compiled and cached in {run():.0f} s")
