"""``sweep``: a grid of runs of another command (lotterylab.sweep), on the executor chosen."""

from __future__ import annotations

from .. import executors
from ..sweep import load_spec, parse_grid, sweep
from .options import start


def cmd_sweep(ns) -> int:
    start(ns)
    executors.check(ns.executor, ns.workers)
    command, grid, args = ns.sweep_command, parse_grid(ns.grid), list(ns.args)
    if args[:1] == ["--"]:
        args = args[1:]
    if ns.spec:
        if ns.grid:
            raise ValueError("give the grid either in --spec or with --grid, not both")
        spec = load_spec(ns.spec)
        if command and spec["command"] and command != spec["command"]:
            raise ValueError(f"the command is {command} here but {spec['command']} in {ns.spec}; give it once")
        command, grid, args = command or spec["command"], spec["grid"], spec["args"] + args
    if not command:
        raise ValueError("name the command to sweep after the sweep's options, e.g. "
                         "lotterylab sweep --grid density=0.1,0.05 pai --budget 1ep")
    res = sweep(command, grid, args, out=ns.out or None, executor=ns.executor, workers=ns.workers,
                threads=ns.threads, progress=not ns.quiet, log=print)
    print(f"{len(res['rows'])} cells: {res['ran']} ran, {res['reused']} finished before, {len(res['failed'])} failed; "
          f"{res['wall_time_s']:.1f} s on {res['executor']['executor']}")
    print(f"table: {res['out']}/table.csv (and table.json)")
    for f in res["failed"]:
        print(f"failed: {f}")
    return 1 if res["failed"] else 0
