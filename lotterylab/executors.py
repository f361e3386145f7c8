"""Where independent pieces of work run: ``serial`` (this process), ``processes`` (a local pool)
or ``ray`` (a Ray cluster: ``RAY_ADDRESS`` or a local one started here).

One small interface, used by sweeps (:mod:`lotterylab.sweep`), the pre-training study and the
construction engine's subset sums: ``executor.map(fn, calls, on_done)`` runs ``fn(*args)`` for
each ``args`` in ``calls`` and returns the results in the order of ``calls`` whatever order they
finish in; ``executor.put(obj)`` hands a large object to the workers once (Ray's object store;
the other executors pass it as it is). ``fn`` must be a module-level function, so workers import
it instead of receiving a pickled copy of code.

Every worker runs its calls on ``threads`` torch (and numba) threads, set inside the worker: a
pool of forked workers that inherited a 2-thread numba pool ran 8x slower on 2 cores (measured
for the study: 84 s vs 9.9 s), so the local pool starts fresh interpreters with one OpenMP and
one numba thread each.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

EXECUTORS: dict[str, type[Executor]] = {}


class WorkerLost(RuntimeError):
    """A worker died under a call (killed, out of memory); finished results are kept."""


def register(cls):
    EXECUTORS[cls.name] = cls
    return cls


def create(name: str = "serial", workers: int | None = None, threads: int = 1, address: str | None = None) -> Executor:
    """An executor by name; ``workers``: processes (``processes``) or CPUs of a local Ray cluster
    (``ray`` without ``RAY_ADDRESS``); ``None`` = the machine's cores."""
    if isinstance(name, Executor):
        return name
    check(name, workers, threads, address)
    return EXECUTORS[name](workers=workers, threads=threads, address=address)


def check(name: str, workers: int | None = None, threads: int = 1, address: str | None = None) -> None:
    """Refuse settings :func:`create` would refuse, without starting anything (commands call it
    before any work)."""
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer (or None: every core), got {workers!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    if name == "serial" and workers not in (None, 1):
        raise ValueError(f"workers={workers} needs a parallel executor: choose processes or ray (serial runs "
                         f"everything in this process)")
    if name == "ray" and workers is not None and (address or os.environ.get("RAY_ADDRESS")):
        raise ValueError("workers sizes a local Ray cluster; on the cluster at RAY_ADDRESS every CPU is used: "
                         "drop workers (or unset RAY_ADDRESS)")
    if name == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ValueError("executor 'ray' needs Ray: pip install 'lotterylab[ray]' (or choose serial or "
                             "processes)") from None


def _call(fn, threads: int, *args):
    """Runs in the worker: pin the thread count, then the call (numba follows torch's count)."""
    from .threads import set_threads

    set_threads(threads)
    return fn(*args)


class Executor:
    name = ""
    shares_objects = False  # True: put() stores once and workers read it (no copy per call)

    def __init__(self, workers: int | None = None, threads: int = 1, address: str | None = None):
        self.threads = threads
        # None: every core, each worker on ``threads`` of them
        self.workers = workers or max(1, (os.cpu_count() or 1) // threads)

    def put(self, obj):
        return obj

    def map(self, fn: Callable, calls: Sequence[tuple], on_done: Callable[[int, object], None] | None = None) -> list:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"executor": self.name, "workers": self.workers, "threads_per_worker": self.threads}

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@register
class Serial(Executor):
    """In this process, in order, on the thread count already set (the caller's)."""

    name = "serial"

    def __init__(self, workers=None, threads=1, address=None):
        super().__init__(1, threads)

    def describe(self) -> dict:  # (the calls ran on the caller's threads, whatever ``threads`` said)
        import torch

        return {"executor": self.name, "workers": 1, "threads_per_worker": torch.get_num_threads()}

    def map(self, fn, calls, on_done=None):
        out = []
        for i, args in enumerate(calls):
            out.append(fn(*args))
            if on_done is not None:
                on_done(i, out[-1])
        return out


@register
class Processes(Executor):
    """A pool of fresh (spawned) interpreters on this machine, kept until :meth:`close`."""

    name = "processes"

    def __init__(self, workers=None, threads=1, address=None):
        super().__init__(workers, threads)
        self._pool = None

    def _start(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if self._pool is None:
            # spawned children read these at start-up: one OpenMP / numba thread unless asked for more
            saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS")}
            os.environ.update({k: str(self.threads) for k in saved})
            try:
                self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
                # workers start on the first submit: start them now, while the variables are set
                list(self._pool.map(int, range(self.workers)))
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        return self._pool

    def map(self, fn, calls, on_done=None):
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        pool = self._start()
        futures = {pool.submit(_call, fn, self.threads, *args): i for i, args in enumerate(calls)}
        out = [None] * len(futures)
        try:
            for f in as_completed(futures):
                i = futures[f]
                out[i] = f.result()
                if on_done is not None:
                    on_done(i, out[i])
        except BrokenProcessPool:
            self._pool = None
            raise WorkerLost("a worker process died (killed, or out of memory) and took the pool with it; what "
                               "finished is kept: rerun to resume") from None
        return out

    def close(self):
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


@register
class Ray(Executor):
    """Ray tasks: on the cluster at ``address`` / ``RAY_ADDRESS``, else on a local cluster of
    ``workers`` CPUs started here (and stopped by :meth:`close`). Each task asks for ``threads``
    CPUs. Needs the extra: ``pip install 'lotterylab[ray]'``."""

    name = "ray"
    shares_objects = True

    def __init__(self, workers=None, threads=1, address=None):
        import ray

        super().__init__(workers, threads)
        self._ray = ray
        self._started = False
        address = address or os.environ.get("RAY_ADDRESS")
        if ray.is_initialized() and workers is not None:
            have = max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
            if have != workers:  # a running cluster cannot be resized: refuse rather than silently differ
                raise ValueError(f"Ray is already running in this process with {have} worker slot(s) of {threads} "
                                 f"CPU(s); workers={workers} cannot resize it: leave workers unset, or call "
                                 f"ray.shutdown() first")
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:  # (``workers`` here counts the local cluster's CPUs)
                ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
                self._started = True
        # what the cluster has, not what was asked (a cluster already running decides): recorded by describe()
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
        self._remote = ray.remote(num_cpus=threads, max_retries=0)(_call)

    def put(self, obj):
        return self._ray.put(obj)

    def map(self, fn, calls, on_done=None):
        ray = self._ray
        # object refs passed as top-level arguments are fetched (zero-copy for arrays) by the worker
        refs = [self._remote.remote(fn, self.threads, *args) for args in calls]
        index = {r: i for i, r in enumerate(refs)}
        out = [None] * len(refs)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for r in done:
                try:
                    out[index[r]] = ray.get(r)
                except ray.exceptions.RayTaskError as e:  # the call raised: the caller sees its own error
                    raise e.as_instanceof_cause() from None
                except ray.exceptions.RayError as e:
                    raise WorkerLost(f"a Ray worker or node was lost ({type(e).__name__}); what finished is kept: "
                                     f"rerun to resume") from None
                if on_done is not None:
                    on_done(index[r], out[index[r]])
        return out

    def close(self):
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
            self._started = False
