"""LeanStep: the same update as optimizer.step(), bit for bit, and step() wherever it differs."""

import pytest
import torch
from torch import nn

from lotterylab.optimizers import LeanStep, make_optimizer
from lotterylab.training import TrainConfig

SETTINGS = [dict(optimizer="adam"), dict(optimizer="adam", weight_decay=1e-3),
            dict(optimizer="adamw", weight_decay=1e-2), dict(optimizer="sgd", lr=0.05),
            dict(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)]


def _run(settings: dict, lean: bool, steps: int = 25, extra=None):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = make_optimizer(TrainConfig(**settings), net.parameters())
    if extra is not None:
        extra(opt)
    step = LeanStep(opt) if lean else opt.step
    g = torch.Generator().manual_seed(1)
    for i in range(steps):
        for p in net.parameters():
            p.grad = None
        x, y = torch.randn(8, 12, generator=g), torch.randint(0, 3, (8,), generator=g)
        nn.functional.cross_entropy(net(x), y).backward()
        for group in opt.param_groups:
            group["lr"] = settings.get("lr", 1.2e-3) * (1 - i / steps)  # a schedule moves the rate
        step()
    return net, opt, step


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_lean_step_is_the_optimizers_step_bit_for_bit(settings):
    ref_net, ref_opt, _ = _run(settings, lean=False)
    net, opt, step = _run(settings, lean=True)
    assert step.lean_steps >= 23  # the lean path ran (not only the fallback), after the state exists
    for a, b in zip(ref_net.parameters(), net.parameters()):
        assert torch.equal(a, b)
    sa, sb = ref_opt.state_dict(), opt.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    for k in sa["state"]:
        for name, v in sa["state"][k].items():
            assert torch.equal(v, sb["state"][k][name]), (k, name)


def test_step_hooks_and_other_optimizers_take_optimizer_step():
    calls = []
    net, opt, step = _run(dict(optimizer="adam"), lean=True,
                          extra=lambda o: o.register_step_post_hook(lambda *a: calls.append(1)))
    assert step.lean_steps == 0 and len(calls) == 25  # every step ran through step(), hooks included
    from torch.optim.optimizer import register_optimizer_step_post_hook

    handle = register_optimizer_step_post_hook(lambda *a: calls.append(2))
    try:
        net, opt, step = _run(dict(optimizer="sgd", momentum=0.9), lean=True)
    finally:
        handle.remove()
    assert step.lean_steps == 0 and calls.count(2) == 25  # a global hook too
    net = nn.Linear(3, 2)
    rms = LeanStep(torch.optim.RMSprop(net.parameters()))
    net(torch.ones(1, 3)).sum().backward()
    rms()
    assert rms.lean_steps == 0 and rms.optimizer.state  # RMSprop: its own step() ran


def test_a_parameter_without_gradient_takes_optimizer_step():
    net = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
    opt = make_optimizer(TrainConfig(), net.parameters())
    step = LeanStep(opt)
    for _ in range(3):
        for p in net.parameters():
            p.grad = None
        net[1](torch.ones(1, 2)).sum().backward()  # the first layer gets no gradient
        step()
    assert step.lean_steps == 0 and len(opt.state) == 2  # step() skipped the first layer, as it does
