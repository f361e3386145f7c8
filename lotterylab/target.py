"""Read a target network into a chain of layers, with ``torch.fx``.

A fully connected target is any module whose forward is: optional flattening, then
``Linear -> activation -> Linear -> ... -> Linear`` (no activation after the last layer), where
dropout and identity may appear anywhere. The module is traced, not pattern-matched on its
class, so hand-written ``forward`` methods and functional activations work too. Anything else is
refused with the node's name and what is supported.
"""

from __future__ import annotations

import math
import operator

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from . import activations as acts_mod
from .graph import LayerGraph, UnsupportedTarget  # noqa: F401  (UnsupportedTarget: re-exported)
from .models import apply_op

# recognised modules, functions and tensor methods: from the one activation table
_ACT_MODULES, _ACT_FUNCTIONS, _ACT_METHODS = acts_mod.PLAIN_MODULES, acts_mod.FUNCTIONS, acts_mod.METHODS
SUPPORTED = ("nn.Linear; activations ReLU, LeakyReLU, Tanh, Sigmoid, GELU (exact), SiLU, ELU (alpha=1), "
             "Softplus (beta=1) as modules or functions; Flatten / flatten / view(B, -1) before the first "
             "Linear; Dropout and Identity anywhere")


# the layer graph every reader returns (the name TargetMLP is kept for code written against 0.1)
TargetMLP = LayerGraph


def _activation_of_module(m: nn.Module) -> str | None | bool:
    """Activation name, None for identity, False if not an activation."""
    if isinstance(m, nn.LeakyReLU):
        return f"leaky_relu:{m.negative_slope}" if m.negative_slope != 0.01 else "leaky_relu"
    if isinstance(m, nn.GELU):
        if m.approximate != "none":
            raise UnsupportedTarget(f"GELU(approximate={m.approximate!r}) is not supported; use the exact GELU")
        return "gelu"
    if isinstance(m, nn.ELU):
        if m.alpha != 1.0:
            raise UnsupportedTarget(f"ELU(alpha={m.alpha}) is not supported; only alpha=1")
        return "elu"
    if isinstance(m, nn.Softplus):
        if m.beta != 1.0:
            raise UnsupportedTarget(f"Softplus(beta={m.beta}) is not supported; only beta=1")
        return "softplus"
    for cls, name in _ACT_MODULES.items():
        if type(m) is cls:
            return name
    return False


def _is_shape_query(node) -> bool:
    """``x.size(...)``, ``x.dim()``, ``x.shape`` and ``x.shape[i]``: shape plumbing, not data."""
    if node.op == "call_method" and node.target in ("size", "dim"):
        return True
    if node.op == "call_function" and node.target is getattr and len(node.args) > 1 and node.args[1] == "shape":
        return True
    return (node.op == "call_function" and node.target is operator.getitem and isinstance(node.args[0], fx.Node)
            and _is_shape_query(node.args[0]))


class _BatchProxy(fx.Proxy):
    """A traced value whose ``len()`` is a concrete batch size: ``x.reshape(len(x), -1)`` then traces
    (``len`` must return an int, so it cannot be recorded). The read graph is only read, never run,
    and convolutional reads are checked against the module's own forward."""

    def __len__(self):
        return 2


class _Tracer(fx.Tracer):
    def proxy(self, node):
        return _BatchProxy(node, self)


def _trace(target: nn.Module, supported: str) -> fx.GraphModule:
    if not isinstance(target, nn.Module):
        raise UnsupportedTarget(f"target must be an nn.Module, got {type(target).__name__}")
    try:
        return fx.GraphModule(target, _Tracer().trace(target))
    except Exception as e:  # noqa: BLE001 - fx raises many kinds; all mean "not traceable"
        raise UnsupportedTarget(f"cannot trace the target with torch.fx ({type(e).__name__}: {e}); its forward must "
                                f"be built from supported layers: {supported}; flatten with nn.Flatten, "
                                f"x.flatten(1) or x.view(x.size(0), -1)") from None


def read_mlp(target: nn.Module) -> LayerGraph:
    """Trace ``target`` and return its layers; raises :class:`UnsupportedTarget` naming the node."""
    gm = _trace(target, SUPPORTED)
    modules = dict(gm.named_modules())
    linears: list[nn.Linear] = []
    names: list[str] = []
    acts: list[str | None] = []  # activation after each linear (None = none yet)
    seen_input = False
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if seen_input:
                raise UnsupportedTarget(f"node {node.name!r}: the target takes more than one input")
            seen_input = True
            continue
        if node.op == "output":
            continue
        kind, detail = _classify(node, modules, SUPPORTED)
        if kind == "shape":  # x.size(0), x.shape[0]: the arguments of a flattening view, no tensor
            continue
        if kind in ("conv", "bn", "pool"):
            name = detail["op"] if kind == "pool" else type(detail).__name__
            raise UnsupportedTarget(f"node {node.name!r} ({name}): a fully connected target is a chain of nn.Linear "
                                    f"layers; convolutional targets are read by read_net (construct(..., "
                                    f"input_shape=(C, H, W))). Supported here: {SUPPORTED}")
        what = detail if kind == "act" else kind  # "linear", "flatten", "pass" or an activation name

        if what == "linear":
            if linears and acts[-1] is None:
                raise UnsupportedTarget(f"module {node.target!r}: two Linear layers without an activation between "
                                        f"them; merge them into one Linear first")
            linears.append(modules[node.target])
            names.append(node.target)
            acts.append(None)
        elif what == "flatten":
            if linears:
                raise UnsupportedTarget(f"node {node.name!r}: flattening is only supported before the first Linear")
        elif what != "pass":
            if not linears:
                raise UnsupportedTarget(f"node {node.name!r}: activation {what} before the first Linear layer")
            if acts[-1] is not None:
                raise UnsupportedTarget(f"node {node.name!r}: two activations in a row after {names[-1]!r}")
            acts[-1] = what
    if not linears:
        raise UnsupportedTarget(f"the target has no nn.Linear layer; supported: {SUPPORTED}")
    if acts[-1] is not None:
        raise UnsupportedTarget(f"the last layer {names[-1]!r} is followed by activation {acts[-1]}; the last "
                                f"layer must be linear (drop the final activation, e.g. softmax goes in the loss)")
    missing = [n for n, a in zip(names[:-1], acts[:-1]) if a is None]
    if missing:  # unreachable given the checks above, kept as a guard
        raise UnsupportedTarget(f"layers {missing} have no activation after them")
    weights, biases = [], []
    for name, lin in zip(names, linears):
        w = lin.weight.detach().to("cpu", torch.float64)
        b = lin.bias.detach().to("cpu", torch.float64) if lin.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
        if not (torch.isfinite(w).all() and torch.isfinite(b).all()):
            raise UnsupportedTarget(f"layer {name!r} has non-finite weights or biases (NaN or inf); fix the target first")
        weights.append(w)
        biases.append(b)
    for k in range(1, len(weights)):
        if weights[k].shape[1] != weights[k - 1].shape[0]:
            raise UnsupportedTarget(f"layer {names[k]!r} expects {weights[k].shape[1]} inputs but {names[k - 1]!r} "
                                    f"gives {weights[k - 1].shape[0]}")
    return LayerGraph(weights, biases, [a for a in acts[:-1]], names=names)


# --- convolutional chains -------------------------------------------------------------------------

NET_SUPPORTED = ("nn.Conv2d (groups=1, dilation=1, zero padding), BatchNorm2d/1d (eval statistics, folded into the "
                 "layer before), MaxPool2d / AvgPool2d (no ceil_mode) / AdaptiveAvgPool2d after an activation, "
                 "Flatten, nn.Linear, the activations of " + SUPPORTED.split(";")[1].strip().split(" as ")[0] +
                 ", Dropout and Identity")


def _pair(v) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(x) for x in v]


def _pool_op(kind: str, node_name: str, kernel_size=None, stride=None, padding=0, ceil_mode=False,
             count_include_pad=True, divisor_override=None, output_size=None, dilation=1, return_indices=False) -> dict:
    if kind == "adaptive_avgpool2d":
        return {"op": kind, "output_size": _pair(output_size)}
    if ceil_mode or divisor_override is not None or return_indices or _pair(dilation) != [1, 1]:
        raise UnsupportedTarget(f"node {node_name!r}: {kind} with ceil_mode, divisor_override, return_indices or "
                                f"dilation is not supported")
    op = {"op": kind, "kernel_size": _pair(kernel_size), "stride": _pair(stride if stride else kernel_size),
          "padding": _pair(padding)}
    if kind == "avgpool2d":
        op["count_include_pad"] = bool(count_include_pad)
    return op


def _classify(node, modules, supported: str = NET_SUPPORTED) -> tuple[str, object]:
    """What a traced node is: ("linear"|"conv"|"bn"|"pool"|"flatten"|"pass"|"act", detail)."""
    if node.op == "call_module":
        m = modules[node.target]
        if isinstance(m, nn.Linear):
            return "linear", m
        if isinstance(m, nn.Conv2d):
            return "conv", m
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            return "bn", m
        if isinstance(m, nn.Flatten):
            return "flatten", None
        if isinstance(m, (nn.Dropout, nn.Identity)):
            return "pass", None
        if isinstance(m, nn.MaxPool2d):
            return "pool", _pool_op("maxpool2d", node.name, m.kernel_size, m.stride, m.padding, m.ceil_mode,
                                    dilation=m.dilation, return_indices=m.return_indices)
        if isinstance(m, nn.AvgPool2d):
            return "pool", _pool_op("avgpool2d", node.name, m.kernel_size, m.stride, m.padding, m.ceil_mode,
                                    m.count_include_pad, m.divisor_override)
        if isinstance(m, nn.AdaptiveAvgPool2d):
            return "pool", _pool_op("adaptive_avgpool2d", node.name, output_size=m.output_size)
        if isinstance(m, (nn.ConvTranspose2d, nn.ConvTranspose1d, nn.Conv1d, nn.Conv3d)):
            raise UnsupportedTarget(f"module {node.target!r} ({type(m).__name__}) is not supported; supported: "
                                    f"{supported}")
        if isinstance(m, nn.MultiheadAttention):
            raise UnsupportedTarget(f"module {node.target!r}: attention is not supported; supported: {supported}")
        a = _activation_of_module(m)
        if a is False:
            raise UnsupportedTarget(f"module {node.target!r} ({type(m).__name__}) is not supported; supported: "
                                    f"{supported}")
        return ("act", a) if a else ("pass", None)
    if _is_shape_query(node):
        return "shape", None
    if node.op == "call_function":
        fn = node.target
        if fn is torch.flatten:
            return "flatten", None
        if fn is F.dropout:
            return "pass", None
        pools = {F.max_pool2d: "maxpool2d", F.avg_pool2d: "avgpool2d", F.adaptive_avg_pool2d: "adaptive_avgpool2d"}
        if fn in pools:
            names = {"maxpool2d": ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
                     "avgpool2d": ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                   "divisor_override"),
                     "adaptive_avgpool2d": ("output_size",)}[pools[fn]]
            kw = dict(zip(names, node.args[1:]), **node.kwargs)
            return "pool", _pool_op(pools[fn], node.name, **kw)
        if fn in _ACT_FUNCTIONS:
            what = _ACT_FUNCTIONS[fn]
            if what == "leaky_relu":
                slope = node.kwargs.get("negative_slope", node.args[1] if len(node.args) > 1 else 0.01)
                what = "leaky_relu" if slope == 0.01 else f"leaky_relu:{slope}"
            if what == "gelu" and node.kwargs.get("approximate", "none") != "none":
                raise UnsupportedTarget(f"node {node.name!r}: tanh-approximate GELU is not supported")
            return "act", what
        if fn in (operator.add, torch.add, operator.iadd):
            raise UnsupportedTarget(f"node {node.name!r} ({getattr(fn, '__name__', fn)}): residual additions are read "
                                    f"for convolutional targets only (read_net; construct(..., input_shape=...)); "
                                    f"supported here: {supported}")
        raise UnsupportedTarget(f"node {node.name!r} calls {getattr(fn, '__name__', fn)}, which is not supported; "
                                f"supported: {supported}")
    if node.op == "call_method":
        if node.target in ("flatten", "view", "reshape"):
            return "flatten", None
        if node.target in _ACT_METHODS:
            return "act", _ACT_METHODS[node.target]
        if node.target in ("add", "add_"):
            raise UnsupportedTarget(f"node {node.name!r}: residual additions are read for convolutional targets "
                                    f"only (read_net; construct(..., input_shape=...)); supported here: {supported}")
        raise UnsupportedTarget(f"node {node.name!r}: method .{node.target}() is not supported; supported: "
                                f"{supported}")
    raise UnsupportedTarget(f"node {node.name!r} ({node.op}) is not supported; supported: {supported}")


def _fold_bn(w: torch.Tensor, b: torch.Tensor, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """BatchNorm in eval mode after a layer, folded into its weights: the layer's output scaled and shifted."""
    if bn.running_mean is None or bn.running_var is None:
        raise UnsupportedTarget("BatchNorm without running statistics (track_running_stats=False) cannot be folded")
    s = 1.0 / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    if bn.weight is not None:
        s = s * bn.weight.detach().double()
    shift = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(s)
    return w * s.view(-1, *([1] * (w.dim() - 1))), (b - bn.running_mean.detach().double()) * s + shift


def read_net(target: nn.Module, input_shape) -> LayerGraph:
    """Trace Conv2d / Linear layers with activations, BatchNorm, pooling and residual additions.

    Returns a :class:`~lotterylab.graph.LayerGraph` whose ``geometry`` describes each layer: ``kind`` ("conv", or
    "linear" on a flattened ``[C, H, W]`` map, stored as a full-size kernel ``[O, C, H, W]``),
    kernel, stride, padding, input shape, the parameter-free ``post`` ops after its activation,
    ``input`` (the layer whose output it reads; -1: the network input) and ``add`` (residual
    blocks: ``{"kind": "identity", "from": j}`` adds layer j's output before the activation,
    ``{"kind": "layer", "from": s}`` adds the output of shortcut layer s, a layer without
    activation). Layers are in an order where everything a layer uses comes before it. A pure
    Linear chain gives ``geometry == []`` (see :func:`read_mlp`). BatchNorm is folded into the
    layer before, and the read graph is checked against the module's own forward.
    """
    shape = tuple(int(s) for s in input_shape)
    gm = _trace(target, NET_SUPPORTED)
    modules = dict(gm.named_modules())
    layers: list[dict] = []  # name, w, b, geo, act, post, bn, input, add
    # value of each traced node: (layer index or -1 for the input, stage "pre" | "post", shape)
    val: dict = {}
    n_inputs = 0
    out_val = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            n_inputs += 1
            if n_inputs > 1:
                raise UnsupportedTarget(f"node {node.name!r}: the target takes more than one input")
            val[node] = (-1, "post", shape)
            continue
        if node.op == "output":
            out_val = val.get(node.args[0])
            continue
        ins = [val[a] for a in node.all_input_nodes if a in val]
        is_add = (node.op == "call_function" and node.target in (operator.add, torch.add, operator.iadd)) or (
            node.op == "call_method" and node.target in ("add", "add_"))
        if is_add:
            if len(ins) != 2:
                raise UnsupportedTarget(f"node {node.name!r}: only additions of two tensors are supported")
            (ka, sa, sha), (kb, sb, shb) = ins
            if sa == "pre" and sb == "pre":  # two linear outputs: the shortcut is the shallower branch
                deeper_a = layers[ka]["geo"]["input"] >= layers[kb]["geo"]["input"]
                main, other = ((ka, sa), (kb, sb)) if deeper_a else ((kb, sb), (ka, sa))
            else:
                main, other = ((ka, sa), (kb, sb)) if sa != "post" else ((kb, sb), (ka, sa))
            if main[1] != "pre" or main[0] < 0 or layers[main[0]]["add"] is not None:
                raise UnsupportedTarget(f"node {node.name!r}: a residual addition must add to a layer's output "
                                        f"before its activation")
            k = main[0]
            if other[1] == "post":
                add = {"kind": "identity", "from": other[0]}
            elif other[0] >= 0 and layers[other[0]]["act"] is None and not layers[other[0]]["post"]:
                add = {"kind": "layer", "from": other[0]}
                layers[other[0]]["shortcut_of"] = k
            else:
                raise UnsupportedTarget(f"node {node.name!r}: unsupported residual addition")
            if sha != shb:
                raise UnsupportedTarget(f"node {node.name!r}: adds tensors of shapes {sha} and {shb}")
            layers[k]["add"] = add
            val[node] = (k, "pre+add", sha)
            continue
        kind, detail = _classify(node, modules)
        if kind == "shape":  # x.size(0), x.shape[0]: the arguments of a flattening view, no tensor
            continue
        if len(ins) != 1:
            raise UnsupportedTarget(f"node {node.name!r} combines several tensors; supported: {NET_SUPPORTED}")
        k_in, stage, cur = ins[0]
        L = layers[k_in] if k_in >= 0 else None
        if kind in ("linear", "conv"):
            m = detail
            if stage != "post":
                raise UnsupportedTarget(f"module {node.target!r}: two weight layers without an activation between "
                                        f"them; merge them into one layer first")
            w = m.weight.detach().to("cpu", torch.float64)
            b = (m.bias.detach().to("cpu", torch.float64) if m.bias is not None else
                 torch.zeros(w.shape[0], dtype=torch.float64))
            if kind == "conv":
                if m.groups != 1 or _pair(m.dilation) != [1, 1] or m.padding_mode != "zeros" or isinstance(m.padding, str):
                    raise UnsupportedTarget(f"module {node.target!r}: Conv2d with groups={m.groups}, dilation={m.dilation},"
                                            f" padding={m.padding!r}, padding_mode={m.padding_mode!r} is not supported "
                                            f"(groups=1, dilation=1, integer zero padding only)")
                if len(cur) != 3 or cur[0] != m.in_channels:
                    raise UnsupportedTarget(f"module {node.target!r} expects {m.in_channels} channels, gets shape {cur}")
                geo = {"kind": "conv", "kernel": list(w.shape[2:]), "stride": _pair(m.stride),
                       "padding": _pair(m.padding), "in_shape": list(cur)}
                H = (cur[1] + 2 * geo["padding"][0] - geo["kernel"][0]) // geo["stride"][0] + 1
                W = (cur[2] + 2 * geo["padding"][1] - geo["kernel"][1]) // geo["stride"][1] + 1
                out = (w.shape[0], H, W)
            else:
                if len(cur) == 3:
                    raise UnsupportedTarget(f"module {node.target!r}: Linear on a feature map needs a flatten before it")
                if cur[0] != m.in_features:
                    raise UnsupportedTarget(f"module {node.target!r} expects {m.in_features} inputs, gets {cur[0]}")
                geo = {"kind": "linear", "kernel": [1, 1], "stride": [1, 1], "padding": [0, 0], "in_shape": list(cur)}
                flat_from = (next((op["from"] for op in reversed(L["post"]) if op["op"] == "flatten"), None) if L
                             else (list(shape) if len(shape) == 3 else None))
                if flat_from is not None and len(flat_from) == 3:  # Linear on a flattened map: a full-size kernel
                    C, Hh, Ww = flat_from
                    w = w.reshape(w.shape[0], C, Hh, Ww)
                    geo.update(kernel=[Hh, Ww], in_shape=list(flat_from))
                out = (w.shape[0],)
            if not (torch.isfinite(w).all() and torch.isfinite(b).all()):
                raise UnsupportedTarget(f"layer {node.target!r} has non-finite weights or biases (NaN or inf); fix the "
                                        f"target first")
            geo["input"] = k_in
            layers.append({"name": node.target, "w": w, "b": b, "geo": geo, "act": None, "post": [], "bn": False,
                           "add": None})
            val[node] = (len(layers) - 1, "pre", out)
        elif kind == "bn":
            if stage != "pre" or L["bn"]:
                raise UnsupportedTarget(f"module {node.target!r}: BatchNorm is supported directly after a Conv2d or "
                                        f"Linear layer only (it is folded into it)")
            L["w"], L["b"] = _fold_bn(L["w"], L["b"], detail)
            L["bn"] = True
            val[node] = (k_in, "pre", cur)
        elif kind == "act":
            if L is None or stage == "post":
                raise UnsupportedTarget(f"node {node.name!r}: activation {detail} must follow a weight layer "
                                        f"(two activations in a row, or one on the input)")
            L["act"] = detail
            val[node] = (k_in, "post", cur)
        elif kind == "pool":
            if L is None or stage != "post" or L["act"] is None:
                raise UnsupportedTarget(f"node {node.name!r}: pooling is supported after a layer's activation only")
            if len(cur) != 3:
                raise UnsupportedTarget(f"node {node.name!r}: pooling needs a feature map")
            L["post"].append(detail)
            val[node] = (k_in, "post", tuple(apply_op(detail, torch.zeros(1, *cur)).shape[1:]))
        elif kind == "flatten" and tuple(node.args[2:]) == tuple(cur) and node.op == "call_method":
            val[node] = (k_in, stage, cur)  # x.reshape(B, *shape) to the shape it has (SourceNet's input): no-op
        elif kind == "flatten":
            if len(cur) == 3 and L is not None:
                L["post"].append({"op": "flatten", "from": list(cur)})
            val[node] = (k_in, stage, (math.prod(cur),))
        else:  # pass
            val[node] = (k_in, stage, cur)
    if not layers:
        raise UnsupportedTarget(f"the target has no Conv2d or Linear layer; supported: {NET_SUPPORTED}")
    if out_val is None or out_val[0] != len(layers) - 1 or out_val[1] != "pre" or layers[-1]["add"] is not None:
        last = layers[-1]
        raise UnsupportedTarget(f"the last layer {last['name']!r} must be the output, without activation "
                                f"({last['act']}; drop the final activation, e.g. softmax goes in the loss)")
    for L in layers[:-1]:
        if L["act"] is None and "shortcut_of" not in L:
            raise UnsupportedTarget(f"layer {L['name']!r} has no activation after it; merge it into the next layer")
    conv = any(L["geo"]["kind"] == "conv" for L in layers)
    if not conv:  # a pure Linear chain: the fully connected reader, flattened input
        return read_mlp(target)
    if layers[0]["geo"]["kind"] != "conv":
        raise UnsupportedTarget("a convolutional target must start with a Conv2d layer")
    layers = _shortcuts_first(layers)
    t = LayerGraph([L["w"] for L in layers], [L["b"] for L in layers], [L["act"] for L in layers[:-1]],
                  input_shape=shape, names=[L["name"] for L in layers],
                  geometry=[dict(L["geo"], post=L["post"], add=L["add"]) for L in layers])
    _check_read(target, t, shape)
    return t


def _shortcuts_first(layers: list[dict]) -> list[dict]:
    """Move each shortcut layer right before the layer it is added to, and renumber references."""
    order = []
    for k, L in enumerate(layers):
        if "shortcut_of" in L:
            continue
        if L["add"] is not None and L["add"]["kind"] == "layer":
            order.append(L["add"]["from"])
        order.append(k)
    new = {old: i for i, old in enumerate(order)}
    new[-1] = -1
    out = []
    for old in order:
        L = dict(layers[old])
        L["geo"] = dict(L["geo"], input=new[L["geo"]["input"]])
        if L["add"] is not None:
            L["add"] = dict(L["add"], **{"from": new[L["add"]["from"]]})
        out.append(L)
    return out


@torch.no_grad()
def _check_read(target: nn.Module, t: LayerGraph, shape) -> None:
    """The read chain (BN folded) must compute the module's function; else reading is wrong."""
    import copy

    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, *shape, generator=g, dtype=torch.float64)
    ref = copy.deepcopy(target).double().eval()(x)
    got = t.forward(x)[-1]
    scale = max(float(ref.abs().max()), 1.0)
    err = float((ref - got).abs().max())
    if err > 1e-6 * scale:
        raise UnsupportedTarget(f"the read layer chain differs from the module's forward by {err:.2e} (BatchNorm "
                                f"folding or an unsupported operation); the target cannot be constructed as read")


def read(module: nn.Module, input_shape=None) -> LayerGraph:
    """Any supported target as a :class:`~lotterylab.graph.LayerGraph`: fully connected chains need
    no shape; convolutional ones take ``input_shape=(C, H, W)`` (or the zoo model's own)."""
    shape = input_shape or (getattr(module, "lotterylab_arch", None) or {}).get("input_shape")
    if shape is not None:
        return read_net(module, tuple(shape))
    try:
        return read_mlp(module)
    except UnsupportedTarget as e:
        if "Conv2d" in str(e):
            raise UnsupportedTarget(f"{e}. Convolutional targets are supported: pass input_shape=(C, H, W)") from None
        raise
