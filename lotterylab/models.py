"""The architectures of the lottery-ticket literature, behind one registry: ``create(name, ...)``.

Every model takes the activation (by name), the input shape ``(C, H, W)`` and the class count,
and is initialised from an explicit seed by :mod:`lotterylab.init` so that the same call gives the
same weights bit for bit on every machine. Activations are modules (not functional calls) so the
module graph read by ``torch.fx`` names them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import torch
from torch import nn

# the one activation table lives in lotterylab.activations; re-exported here for model code
from .activations import ACTIVATIONS, make_activation  # noqa: E402,F401
from .init import initialize


class SourceMLP(nn.Module):
    """The random source network of a fully connected construction: Linear layers of the given
    widths with their own activation after each but the last (``acts[k]`` after layer k)."""

    def __init__(self, widths: Sequence[int], acts: Sequence[str]):
        super().__init__()
        if len(acts) != len(widths) - 2:
            raise ValueError(f"{len(widths) - 1} layers need {len(widths) - 2} activations, got {len(acts)}")
        self.linears = nn.ModuleList(nn.Linear(widths[k], widths[k + 1]) for k in range(len(widths) - 1))
        self.acts = nn.ModuleList(make_activation(a) for a in acts)

    def forward(self, x, return_hidden: bool = False):
        h = x.reshape(x.shape[0], -1)
        hidden = []
        for k, lin in enumerate(self.linears):
            h = lin(h)
            if k < len(self.acts):
                h = self.acts[k](h)
            hidden.append(h)
        return hidden if return_hidden else h


def _flat_size(features: nn.Module, input_shape) -> int:
    was_training = features.training
    features.eval()  # BatchNorm refuses a batch of one in training mode
    try:
        with torch.no_grad():
            return int(features(torch.zeros(1, *input_shape)).numel())
    except RuntimeError as e:
        raise ValueError(f"input shape {tuple(input_shape)} is too small for this architecture: {e}") from None
    finally:
        features.train(was_training)


def dense_stack(dims: Sequence[int], activation: str) -> nn.Sequential:
    """Flatten, then Linear layers dims[0] -> dims[1] -> ... with the activation between them."""
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(make_activation(activation))
    return nn.Sequential(*layers)


class MLP(nn.Module):
    """Flatten + Linear layers with an activation between them (none after the last)."""

    def __init__(self, widths: Sequence[int], activation: str = "relu", input_shape=(1, 28, 28), num_classes: int = 10):
        super().__init__()
        self.layers = dense_stack([math.prod(input_shape), *widths, num_classes], activation)

    def forward(self, x):
        return self.layers(x)


class ConvNet(nn.Module):
    """Conv blocks (3x3 or given kernel) with max pooling, then a fully connected head.

    ``plan`` lists conv widths and "M" for 2x2 max pooling, as in Frankle & Carbin's Conv-2/4/6.
    """

    def __init__(self, plan, head: Sequence[int], activation: str = "relu", input_shape=(3, 32, 32),
                 num_classes: int = 10, kernel_size: int = 3, padding: int = 1, batch_norm: bool = False,
                 global_pool: bool = False):
        super().__init__()
        # kept so a channel-pruned copy can be rebuilt with other widths (find.early_bird.compact_channels)
        self.plan, self.head = list(plan), list(head)
        self.conv_args = {"kernel_size": kernel_size, "padding": padding, "batch_norm": batch_norm,
                          "global_pool": global_pool}
        layers: list[nn.Module] = []
        c = input_shape[0]
        for item in plan:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            layers.append(nn.Conv2d(c, item, kernel_size, padding=padding, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(item))
            layers.append(make_activation(activation))
            c = item
        if global_pool:
            layers.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*layers)
        self.classifier = dense_stack([_flat_size(self.features, input_shape), *head, num_classes], activation)

    def forward(self, x):
        return self.classifier(self.features(x))


class LeNet5(nn.Module):
    def __init__(self, activation: str = "relu", input_shape=(1, 28, 28), num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], 6, 5, padding=2), make_activation(activation), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), make_activation(activation), nn.MaxPool2d(2),
        )
        self.classifier = dense_stack([_flat_size(self.features, input_shape), 120, 84, num_classes], activation)

    def forward(self, x):
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """ResNet basic block; a 1x1 strided conv + BN shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int, activation: str):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act2 = make_activation(activation)
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNetCIFAR(nn.Module):
    """He et al.'s CIFAR ResNet-(6n+2): three stages of width w, 2w, 4w."""

    def __init__(self, depth: int = 20, width: int = 16, activation: str = "relu", input_shape=(3, 32, 32),
                 num_classes: int = 10):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 56, ...), got {depth}")
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(input_shape[0], width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.act = make_activation(activation)
        blocks = []
        c = width
        for stage, w in enumerate((width, 2 * width, 4 * width)):
            for b in range(n):
                blocks.append(BasicBlock(c, w, 2 if (stage > 0 and b == 0) else 1, activation))
                c = w
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.act(self.bn(self.conv(x)))
        return self.fc(self.flatten(self.pool(self.blocks(x))))


_VGG = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
}

# name -> (builder(activation, input_shape, num_classes, **kw), default init scheme, default input shape)
_REGISTRY: dict[str, tuple[Callable[..., nn.Module], str, tuple]] = {
    "mlp": (lambda a, s, c, widths=(300, 100): MLP(widths, a, s, c), "glorot_normal", (1, 28, 28)),
    "lenet_300_100": (lambda a, s, c: MLP((300, 100), a, s, c), "glorot_normal", (1, 28, 28)),
    "lenet5": (lambda a, s, c: LeNet5(a, s, c), "glorot_normal", (1, 28, 28)),
    # one conv layer (5x5 filters) + 2x2 max pooling + a linear readout: the pre-training study's two-layer CNN
    "conv1": (lambda a, s, c, width=32: ConvNet([width, "M"], (), a, s, c, kernel_size=5, padding=2),
              "kaiming_uniform", (1, 28, 28)),
    # batch_norm=True adds BN after each conv (early-bird's channel masks read its scaling factors)
    "conv2": (lambda a, s, c, batch_norm=False: ConvNet([64, 64, "M"], (256, 256), a, s, c, batch_norm=batch_norm),
              "glorot_normal", (3, 32, 32)),
    "conv4": (lambda a, s, c, batch_norm=False: ConvNet([64, 64, "M", 128, 128, "M"], (256, 256), a, s, c,
                                                        batch_norm=batch_norm), "glorot_normal", (3, 32, 32)),
    "conv6": (lambda a, s, c, batch_norm=False: ConvNet([64, 64, "M", 128, 128, "M", 256, 256, "M"], (256, 256), a, s,
                                                        c, batch_norm=batch_norm), "glorot_normal", (3, 32, 32)),
    "vgg11": (lambda a, s, c: ConvNet(_VGG["vgg11"], (), a, s, c, batch_norm=True, global_pool=True),
              "kaiming_normal", (3, 32, 32)),
    "vgg16": (lambda a, s, c: ConvNet(_VGG["vgg16"], (), a, s, c, batch_norm=True, global_pool=True),
              "kaiming_normal", (3, 32, 32)),
    # any ConvNet by its plan (conv widths and "M" for pooling): physically smaller channel tickets
    "convnet": (lambda a, s, c, plan, head=(), kernel_size=3, padding=1, batch_norm=False, global_pool=False:
                ConvNet(plan, head, a, s, c, kernel_size, padding, batch_norm, global_pool), "kaiming_normal", (3, 32, 32)),
    "resnet20": (lambda a, s, c, width=16: ResNetCIFAR(20, width, a, s, c), "kaiming_normal", (3, 32, 32)),
    # constructions' sources: widths [n_0, N_1, ..., N_K] and one activation per hidden layer
    "source_mlp": (lambda a, s, c, widths, acts: SourceMLP(widths, acts), "uniform", (1, 1, 1)),
    "source_net": (lambda a, s, c, plan: SourceNet(plan, s), "uniform", (1, 1, 1)),
    # universal tickets' sources: shared univariate blocks and dense blocks (lotterylab.universal.source)
    "universal_source": (lambda a, s, c, dim, stages: _universal_source(dim, stages), "uniform", (1, 1, 1)),
}


def _universal_source(dim, stages) -> nn.Module:
    from .universal.source import UniversalSource

    return UniversalSource(dim, stages)


class SourceNet(nn.Module):
    """The random source network of a convolutional construction: the ops of ``plan`` in order,
    each ``{"op": "conv", in, out, kernel, stride, padding}``, ``{"op": "linear", in, out}``
    (flattening its input), ``{"op": "act", "name"}`` or a parameter-free op of :func:`apply_op`.
    A weight op may read another op's output (``"input"``: its plan position, -1 the network
    input) and add one before the next activation (``"add"``): residual sources. Weight layers
    are ``layers.<k>`` in order."""

    def __init__(self, plan: Sequence[dict], input_shape: Sequence[int]):
        super().__init__()
        self.plan = [dict(op) for op in plan]
        self.input_shape = tuple(input_shape)
        layers, acts = [], {}
        for i, op in enumerate(self.plan):
            if op["op"] == "conv":
                layers.append(nn.Conv2d(op["in"], op["out"], tuple(op["kernel"]), tuple(op["stride"]),
                                        tuple(op["padding"])))
            elif op["op"] == "linear":
                layers.append(nn.Linear(op["in"], op["out"]))
            elif op["op"] == "act":
                acts[str(i)] = make_activation(op["name"])
        self.layers = nn.ModuleList(layers)
        self.acts = nn.ModuleDict(acts)

    def forward(self, x):
        return run_plan(self.plan, x.reshape(x.shape[0], *self.input_shape), self.layers, self.acts)[-1]


def run_plan(plan: Sequence[dict], x0: torch.Tensor, layers, acts, added=None) -> list[torch.Tensor]:
    """Every plan position's output: a weight op (``layers[k]``, in order) reads "input" (default:
    the op before; -1: ``x0``) and adds the output at "add" (a residual branch) before the activation
    that follows it, ``added[i]`` selecting that map's channels where given; ``acts[str(i)]`` are
    the activations, other ops run through :func:`apply_op`."""
    outs: list[torch.Tensor] = []
    k = 0
    for i, op in enumerate(plan):
        if op["op"] in ("conv", "linear"):
            src = op.get("input", i - 1)
            h = x0 if src < 0 else outs[src]
            if op["op"] == "linear":
                h = h.reshape(h.shape[0], -1)
            h = layers[k](h)
            if "add" in op:
                a = x0 if op["add"] < 0 else outs[op["add"]]
                h = h + (a if added is None else a.index_select(1, added[i]))
            k += 1
        else:
            h = outs[-1] if outs else x0
            h = acts[str(i)](h) if op["op"] == "act" else apply_op(op, h)
        outs.append(h)
    return outs


def apply_op(op: dict, x: torch.Tensor) -> torch.Tensor:
    """Run one parameter-free op of a chain (pooling, flatten) on ``x``."""
    import torch.nn.functional as F

    kind = op["op"]
    if kind == "maxpool2d":
        return F.max_pool2d(x, op["kernel_size"], op["stride"], op["padding"])
    if kind == "avgpool2d":
        return F.avg_pool2d(x, op["kernel_size"], op["stride"], op["padding"],
                            count_include_pad=op.get("count_include_pad", True))
    if kind == "adaptive_avgpool2d":
        return F.adaptive_avg_pool2d(x, op["output_size"])
    if kind == "flatten":
        return x.reshape(x.shape[0], -1)
    raise ValueError(f"unknown op {kind!r}")


# built with explicit layouts (constructions' sources; channel-pruned ConvNets), not zoo models to train by name
_INTERNAL = {"source_mlp", "source_net", "convnet", "universal_source"}


def names() -> list[str]:
    return sorted(set(_REGISTRY) - _INTERNAL)


def create(name: str, activation: str = "relu", input_shape: Sequence[int] | None = None, num_classes: int = 10,
           init: str | dict | None = None, seed: int = 0, device=None, **kwargs) -> nn.Module:
    """Build zoo model ``name`` and initialise it from ``seed``.

    ``init`` is a scheme name or an :class:`~lotterylab.init.InitSpec` dict; default: the
    literature's choice for that model (Glorot normal for LeNet/Conv-k, Kaiming normal for VGG/ResNet).
    The returned model carries ``model.lotterylab_arch`` (name and arguments), enough to rebuild it,
    and ``model.lotterylab_init`` (the init spec used), so a finder can re-draw it with another seed.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(names())}")
    builder, default_init, default_shape = _REGISTRY[name]
    shape = tuple(int(s) for s in (input_shape or default_shape))
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (channels, height, width), got {input_shape!r}")
    make_activation(activation)  # validates the name
    try:
        model = _build_uninitialised(builder, activation, shape, int(num_classes), kwargs)
    except TypeError as e:
        raise ValueError(f"model {name!r} does not take arguments {sorted(kwargs)}: {e}") from None
    init_spec = init if init is not None else default_init
    initialize(model, init_spec, seed)
    model.lotterylab_arch = {"name": name, "activation": activation, "input_shape": list(shape),
                             "num_classes": int(num_classes), "kwargs": {k: (list(v) if isinstance(v, tuple) else v)
                                                                         for k, v in kwargs.items()}}
    model.lotterylab_init = init_spec
    return model.to(device) if device is not None else model


def _build_uninitialised(builder, activation: str, shape: tuple, num_classes: int, kwargs: dict) -> nn.Module:
    """The builder's module with its parameters allocated but not drawn: :func:`initialize` overwrites
    every one, and torch's default init of the demo's 240M-parameter source took 2.5 s. Built on the
    meta device, then given memory; BatchNorm statistics get their defaults. A module with other
    buffers (or one that cannot be built on the meta device) is built as usual."""
    try:
        with torch.device("meta"):
            model = builder(activation, shape, num_classes, **kwargs)
    except (RuntimeError, NotImplementedError):
        return builder(activation, shape, num_classes, **kwargs)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
    in_norms = {id(b) for m in norms for b in m.buffers(recurse=False)}
    plain = any(isinstance(v, torch.Tensor) for m in model.modules() for v in vars(m).values())
    if plain or any(id(b) not in in_norms for b in model.buffers()):  # (tensors we could not restore)
        return builder(activation, shape, num_classes, **kwargs)
    made: dict[int, nn.Parameter] = {}  # (a parameter shared by two modules stays shared)
    for m in model.modules():  # (by hand: the first Module.to_empty of a process took 0.7 s)
        for key, p in m._parameters.items():
            if p is not None:
                if id(p) not in made:
                    made[id(p)] = nn.Parameter(torch.empty(p.shape, dtype=p.dtype), p.requires_grad)
                m._parameters[key] = made[id(p)]
        for key, b in m._buffers.items():
            if b is not None:
                m._buffers[key] = torch.empty(b.shape, dtype=b.dtype)
    for m in norms:
        m.reset_running_stats()
    return model


MAX_PARAMETERS = int(os.environ.get("LOTTERYLAB_MAX_PARAMETERS", 2_000_000_000))


def count_parameters(arch: dict) -> int:
    """Parameters of the model an architecture record describes, without allocating them (meta device).

    Raises ValueError for records that do not describe a buildable model or exceed MAX_PARAMETERS
    (``$LOTTERYLAB_MAX_PARAMETERS``): files are checked before a network is built."""
    return sum(math.prod(s) for s in parameter_shapes(arch).values())


def parameter_shapes(arch: dict) -> dict[str, tuple]:
    """``{name: shape}`` of an architecture record's parameters, checked as :func:`count_parameters` says."""
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str) or arch["name"] not in _REGISTRY:
        raise ValueError(f"unknown architecture {arch.get('name') if isinstance(arch, dict) else arch!r}")
    shape = arch.get("input_shape") or _REGISTRY[arch["name"]][2]
    if not (isinstance(shape, (list, tuple)) and len(shape) == 3
            and all(isinstance(d, int) and not isinstance(d, bool) and 0 < d < 2**20 for d in shape)):
        raise ValueError(f"input_shape {shape!r} is not three positive sizes")
    classes = arch.get("num_classes", 10)
    if not isinstance(classes, int) or isinstance(classes, bool) or not 0 < classes < 2**24:
        raise ValueError(f"num_classes {classes!r} is not a positive size")
    kwargs = arch.get("kwargs", {})
    if not isinstance(kwargs, dict) or not isinstance(arch.get("activation", "relu"), str):
        raise ValueError("kwargs must be an object and activation a name")
    make_activation(arch.get("activation", "relu"))
    try:
        with torch.device("meta"):
            model = _REGISTRY[arch["name"]][0](arch.get("activation", "relu"), tuple(shape), classes, **kwargs)
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError, AttributeError, OverflowError) as e:
        raise ValueError(f"architecture {arch['name']!r} cannot be built from {kwargs!r}: "
                         f"{type(e).__name__}: {str(e)[:200]}") from None
    n = sum(p.numel() for p in model.parameters())
    if n > MAX_PARAMETERS:
        raise ValueError(f"architecture {arch['name']!r} has {n:,} parameters, over the limit of {MAX_PARAMETERS:,} "
                         f"(LOTTERYLAB_MAX_PARAMETERS raises it)")
    return {k: tuple(p.shape) for k, p in model.named_parameters()}


def from_arch(arch: dict, init=None, seed: int = 0, device=None) -> nn.Module:
    """Rebuild a model from its ``lotterylab_arch`` description."""
    try:
        return create(arch["name"], arch.get("activation", "relu"), arch.get("input_shape"), arch.get("num_classes", 10),
                      init=init, seed=seed, device=device, **arch.get("kwargs", {}))
    except KeyError as e:
        raise ValueError(f"architecture description lacks {e}; got {arch!r}") from None


def fold_input_normalization(model: nn.Module, mean, std) -> nn.Module:
    """A copy of ``model`` that takes raw inputs: ``(x - mean) / std`` folded into its first layer.

    The papers construct tickets on pixels in [0, 1]; a target trained on normalised inputs has the
    same function on raw pixels once its first layer absorbs the normalisation (per channel
    ``mean`` / ``std``). Exact for a first nn.Linear or an unpadded first Conv2d; a zero-padded conv
    would see padding zeros where the normalised model saw ``-mean / std``, so it is refused.
    """
    import copy

    out = copy.deepcopy(model)
    first = next((m for m in out.modules() if isinstance(m, (nn.Linear, nn.Conv2d))), None)
    if first is None:
        raise ValueError("the model has no nn.Linear or nn.Conv2d layer to fold the normalisation into")
    mean = torch.as_tensor(mean, dtype=torch.float64).flatten()
    std = torch.as_tensor(std, dtype=torch.float64).flatten()
    if (std <= 0).any():
        raise ValueError(f"std must be > 0, got {std.tolist()}")
    with torch.no_grad():
        w = first.weight.detach().double()
        b = first.bias.detach().double() if first.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
        if isinstance(first, nn.Conv2d):
            pad = first.padding
            if isinstance(pad, str) or any(int(p) for p in pad):
                raise ValueError("the first Conv2d is zero-padded: folding the normalisation into it would be "
                                        "wrong at image borders; normalise the inputs instead")
            C = w.shape[1]
            mc, sc = mean.expand(C), std.expand(C)
            b = b - (w.sum((2, 3)) * (mc / sc).view(1, -1)).sum(1)
            w = w / sc.view(1, -1, 1, 1)
        else:  # inputs flattened from [C, H, W]: each input belongs to channel  i // (H * W)
            n = w.shape[1]
            C = mean.numel()
            if n % C:
                raise ValueError(f"{n} inputs cannot be split into {C} channels")
            mc, sc = mean.repeat_interleave(n // C), std.repeat_interleave(n // C)
            b = b - w @ (mc / sc)
            w = w / sc.view(1, -1)
        first.weight.copy_(w.to(first.weight.dtype))
        if first.bias is None:
            first.bias = nn.Parameter(b.to(first.weight.dtype))
        else:
            first.bias.copy_(b.to(first.bias.dtype))
    return out
