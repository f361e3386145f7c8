"""Hyperparameters as dataclasses that also make the CLI (OpenLTH's idea), and run names by hash.

Field help comes from ``field(metadata={"help": ...})``. Booleans become ``--flag/--no-flag``
(never ``type=bool``, which parses "False" as true). Other metadata:

* ``"flag"``: the CLI name when it differs from the field's (one vocabulary across commands:
  ``GFSConfig.fraction`` is ``--density`` on the command line);
* ``"aliases"``: old spellings, still accepted with a deprecation warning;
* ``"check"``: a value check run at parse time (:data:`CHECKS`), so bad values stop before work.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import re
import sys


def _finite(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError("not a finite number")
    return v


def _check(pred, what):
    def conv(kind):
        def parse(text):
            try:
                v = _finite(text) if kind is float else kind(text)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"{text!r} is not {'a finite number' if kind is float else 'an integer'}") from None
            if not pred(v):
                raise argparse.ArgumentTypeError(f"{text!r}: must be {what}")
            return v
        return parse
    return conv


def _steps(text: str) -> str:
    if text == "":  # an empty default: "the command's own choice"
        return text
    m = _STEP.match(str(text))
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} must look like '500it' (iterations) or '20ep' (epochs)")
    return text


def _positive_steps(text: str) -> str:
    _steps(text)
    if int(_STEP.match(text).group(1)) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1 iteration or epoch")
    return text


CHECKS = {
    "positive": _check(lambda v: v > 0, "> 0"),
    "nonneg": _check(lambda v: v >= 0, ">= 0"),
    "density": _check(lambda v: 0 < v <= 1, "a density in (0, 1] (the fraction kept)"),
    "rate": _check(lambda v: 0 < v < 1, "in (0, 1)"),
    "unit": _check(lambda v: 0 <= v < 1, "in [0, 1)"),
    "finite": _check(lambda v: True, "finite"),
}
def _steps_list(text: str) -> str:
    for item in (t for t in str(text).split(",") if t.strip()):
        _positive_steps(item.strip())
    return text


STEP_CHECKS = {"steps": _steps, "positive_steps": _positive_steps, "steps_list": _steps_list}


class DeprecatedAlias(argparse.Action):
    """An old flag spelling: stores into the new destination and warns once."""

    def __init__(self, option_strings, dest, new_flag: str = "", **kw):
        self.new_flag = new_flag
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        import warnings

        warnings.warn(f"{option_string} is deprecated; use {self.new_flag}", FutureWarning, stacklevel=2)
        print(f"warning: {option_string} is deprecated; use {self.new_flag}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def flag_name(f) -> str:
    return "--" + f.metadata.get("flag", f.name.replace("_", "-"))


def add_arguments(parser: argparse.ArgumentParser, cls, defaults=None, exclude=()) -> None:
    defaults = defaults or cls()
    group = parser.add_argument_group(cls.__name__)
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        flag = flag_name(f)
        default = getattr(defaults, f.name)
        help_ = f"{f.metadata.get('help', '')} (default: {default})"
        check = f.metadata.get("check")
        if isinstance(default, bool):
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default, help=help_)
            continue
        if not (isinstance(default, (int, float, str)) or default is None):
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported field type {type(default).__name__}")
        kind = type(default) if default is not None else str
        if check in STEP_CHECKS:
            conv = STEP_CHECKS[check]
        elif check is not None:
            conv = CHECKS[check](kind)
        else:
            conv = _finite if kind is float else kind
        group.add_argument(flag, dest=f.name, type=conv, default=default, help=help_, choices=f.metadata.get("choices"))
        for alias in f.metadata.get("aliases", ()):
            group.add_argument(alias, dest=f.name, type=conv, action=DeprecatedAlias, new_flag=flag,
                               help=argparse.SUPPRESS, choices=f.metadata.get("choices"))


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
