"""Models shared by the tests: real, trained targets for constructions and the graph, small models for
the finders (seeded: the same net every run)."""

import torch
from torch import nn

from lotterylab import models
from lotterylab.training import Callback

SHAPE = (1, 12, 12)


def trained_mlp(act: str, widths=(4, 8, 6, 3), seed=0, steps=150):
    """A small MLP trained to imitate a random teacher on the box [-1, 1]^n0 (a real, trained target)."""
    g = torch.Generator().manual_seed(seed)
    layers = []
    for k in range(len(widths) - 1):
        layers.append(nn.Linear(widths[k], widths[k + 1]))
        if k < len(widths) - 2:
            layers.append(models.make_activation(act))
    net = nn.Sequential(*layers)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    teacher = torch.randn(widths[0], widths[-1], generator=g)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        x = torch.rand(64, widths[0], generator=g) * 2 - 1
        loss = ((net(x) - torch.sin(x @ teacher)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def trained_on_templates(net: nn.Module, seed: int, steps: int) -> nn.Module:
    """Train ``net`` to separate 5 random 12x12 class templates with noise (a real, trained target)."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.rand(5, *SHAPE, generator=g)
    y = torch.randint(0, 5, (256,), generator=g)
    x = (templates[y] + 0.3 * torch.rand(256, *SHAPE, generator=g)).clamp(0, 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


def small_cnn(act: str, seed: int = 0, steps: int = 60, batch_norm: bool = False) -> nn.Module:
    """Two 3x3 padded convs (4 channels), max pooling, average pooling, Linear head on 12x12 inputs,
    trained to separate 5 random class templates (a real, trained target)."""
    torch.manual_seed(seed)
    a = lambda: models.make_activation(act)  # noqa: E731
    bn = [nn.BatchNorm2d(4)] if batch_norm else []
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), a(), nn.MaxPool2d(2),
                        nn.Conv2d(4, 4, 3, padding=1, bias=not batch_norm), *bn, a(), nn.AdaptiveAvgPool2d(2),
                        nn.Flatten(), nn.Linear(16, 5))
    return trained_on_templates(net, seed, steps)


class Block(nn.Module):
    """A ResNet basic block (BN after each conv; a 1x1 strided conv + BN shortcut when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int, act: str):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out)
        self.c2, self.b2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out)
        self.a1, self.a2 = models.make_activation(act), models.make_activation(act)
        self.sc = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                   if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x):
        return self.a2(self.b2(self.c2(self.a1(self.b1(self.c1(x))))) + self.sc(x))


def small_resnet(act: str, seed: int = 0, steps: int = 10) -> nn.Module:
    """Stem conv, an identity block, a downsampling block, global average pooling, Linear head; trained."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), models.make_activation(act), Block(4, 4, 1, act),
                        Block(4, 6, 2, act), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5))
    return trained_on_templates(net, seed, steps)


FAST = dict(batch_size=30, eval_every="10it")  # finders' training runs: small batches, frequent evaluation


def finder_mlp(seed=0):
    """The finders' small MLP on 1x8x8 inputs (widths 32, 16)."""
    return models.create("mlp", input_shape=(1, 8, 8), widths=(32, 16), seed=seed)


class StartWeights(Callback):
    """Records the weights at the first backward of every training run (before any step)."""

    def __init__(self, model):
        self.model, self.seen = model, []
        self._armed = True

    def on_backward_end(self, loop):
        if self._armed:
            self.seen.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
            self._armed = False

    def on_eval(self, loop, record):
        if loop.iteration >= loop.total:
            self._armed = True
