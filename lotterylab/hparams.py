"""Hyperparameters as dataclasses that also make the CLI (OpenLTH's idea), and run names by hash.

Field help comes from ``field(metadata={"help": ...})``. Booleans become ``--flag/--no-flag``
(never ``type=bool``, which parses "False" as true).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re


def add_arguments(parser: argparse.ArgumentParser, cls, defaults=None) -> None:
    defaults = defaults or cls()
    group = parser.add_argument_group(cls.__name__)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        help_ = f"{f.metadata.get('help', '')} (default: {default})"
        if isinstance(default, bool):
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default, help=help_)
        elif isinstance(default, (int, float, str)) or default is None:
            kind = type(default) if default is not None else str
            group.add_argument(flag, dest=f.name, type=kind, default=default, help=help_,
                               choices=f.metadata.get("choices"))
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported field type {type(default).__name__}")


def from_namespace(cls, ns: argparse.Namespace):
    return cls(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(cls)})


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def run_hash(*objs, n: int = 12) -> str:
    """Stable hash of hyperparameter dataclasses/dicts: same hyperparameters, same run folder."""
    payload = [to_dict(o) if dataclasses.is_dataclass(o) else o for o in objs]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:n]


_STEP = re.compile(r"^\s*(\d+)\s*(it|ep)\s*$")


def parse_steps(text: str, iterations_per_epoch: int) -> int:
    """'500it' -> 500; '20ep' -> 20 epochs of iterations. Bare numbers are refused: say which."""
    m = _STEP.match(str(text))
    if not m:
        raise ValueError(f"step count {text!r} must look like '500it' (iterations) or '20ep' (epochs)")
    n, unit = int(m.group(1)), m.group(2)
    return n if unit == "it" else n * iterations_per_epoch
