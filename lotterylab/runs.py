"""Reading finished runs back: ``load_run(folder)`` -> (model with the trained weights, result).

Every command that trains writes its weights into its run folder (``checkpoint.safetensors``;
IMP one ``final.safetensors`` per round; early-bird under ``retrain/``) and its ``result.json``
records the architecture, so a zoo model is rebuilt by name; for your own model pass ``model=``.
Keys are the model's own ``state_dict`` names (no prefixes to strip).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from . import models
from .io import FileFormatError, load_state_into, load_tensors, read_json


def _weights_file(folder: Path, result: dict) -> tuple[Path, str]:
    kind = result.get("kind")
    if kind == "imp":
        last = max(r["round"] for r in result["rounds"])
        return folder / f"round_{last:02d}" / "final.safetensors", "weights"
    if kind == "early_bird":
        return folder / "retrain" / "checkpoint.safetensors", "checkpoint"
    if kind in ("edge_popup", "construct"):
        raise ValueError(f"{folder}: a {kind} run holds a ticket (untrained weights): use "
                         f"lotterylab.load_ticket('{folder / 'ticket.safetensors'}').network()")
    return folder / "checkpoint.safetensors", "checkpoint"


def load_run(folder, model: nn.Module | None = None, device=None) -> tuple[nn.Module, dict]:
    """The trained model of a run folder and its result. ``model``: an instance of the run's
    architecture to load into (needed for models not from the zoo)."""
    folder = Path(folder)
    if not (folder / "result.json").exists():
        raise FileNotFoundError(f"{folder}: no result.json; the run is unfinished or this is not a run folder")
    result = read_json(folder / "result.json")
    path, kind = _weights_file(folder, result)
    if kind == "weights" and not path.exists():  # IMP round folders: find the last one written
        finals = sorted(folder.glob("round_*/final.safetensors"))
        if finals:
            path = finals[-1]
    tensors, _ = load_tensors(path, kind=kind)
    state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")} if kind == "checkpoint" else tensors
    if model is None:
        arch = result.get("arch") or (result.get("search") or {}).get("arch")
        if not arch or "name" not in arch:
            raise ValueError(f"{folder}: the run does not record a zoo architecture; pass model= (an instance of "
                             f"the model that was trained)")
        model = models.from_arch(arch)
    load_state_into(model, state, path)
    return (model.to(device) if device is not None else model).eval(), result


def load_weights(path, device=None) -> nn.Module:
    """A ``weights`` file that records its architecture (e.g. early-bird's ``compact.safetensors``) as a model."""
    tensors, meta = load_tensors(path, kind="weights")
    arch = meta.get("arch")
    if not isinstance(arch, dict) or "name" not in arch:
        raise FileFormatError(f"{path}: the weights do not record their architecture; load them into your model "
                              f"with model.load_state_dict(lotterylab.io.load_tensors(path)[0])")
    try:
        models.count_parameters(arch)
        model = models.from_arch(arch)
    except (ValueError, TypeError) as e:
        raise FileFormatError(f"{path}: {e}") from None
    load_state_into(model, tensors, path)
    return (model.to(device) if device is not None else model).eval()
