"""The one loop behind every parallel job: submit independent pieces of work to a backend (this
process, a pool of local processes, or Ray tasks), hand each result to the driver exactly once,
retry what failed for reasons other than bad input, and cancel what is left on any exception or
Ctrl-C.

The driver alone writes output files, so workers need no shared filesystem and a piece of work
that ran twice (a retry after a lost worker whose first result was already on its way) still
reaches the driver once: results are handed over by piece index, and an index that is done is
never handed over again.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass
from typing import Any

from dappled.errors import DappledError, OptionError

# Ray retries a task by itself when its worker process or node dies (system failures); the driver
# resubmits a piece whose task failed in any other way except a DappledError (bad input fails
# the same way every time), up to RETRIES times.
RAY_TASK_RETRIES = 3
RETRIES = 2


def set_threads(threads: int) -> None:
    """Pin torch (and OpenMP) to ``threads`` threads in this process."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def worker_threads(jobs: int) -> int:
    """Threads per local worker so that jobs x threads does not exceed the cores."""
    from dappled.threads import available_cores

    return max(1, available_cores() // max(1, jobs))


class Backend:
    """Where pieces of work run. Handles are opaque and hashable."""

    window: int = 1 << 30  # most pieces in flight at once
    retries: int = 0

    def put(self, obj: Any) -> Any:
        """A reference to ``obj`` that submit() may pass instead of the object (shared by value)."""
        return obj

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        raise NotImplementedError

    def wait(self, handles: Sequence[Any]) -> list[Any]:
        """Some finished handles (at least one, unless interrupted)."""
        raise NotImplementedError

    def result(self, handle: Any) -> Any:
        """The result of a finished handle, or the exception its work raised."""
        raise NotImplementedError

    def cancel(self, handles: Sequence[Any]) -> None:
        """Stop work not yet finished (best effort)."""

    def close(self) -> None:
        """Release worker processes."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(eq=False)
class _Serial:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    done: bool = False
    value: Any = None
    error: BaseException | None = None


class InProcess(Backend):
    """Runs each piece in this process, one at a time, when it is waited for."""

    def __init__(self, threads: int | None = None) -> None:
        if threads is not None:
            set_threads(threads)

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        return _Serial(fn, args)

    def wait(self, handles: Sequence[Any]) -> list[Any]:
        h = handles[0]
        try:
            h.value = h.fn(*h.args)
        except Exception as exc:
            h.error = exc
        h.done = True
        return [h]

    def result(self, handle: Any) -> Any:
        if handle.error is not None:
            raise handle.error
        return handle.value


class LocalProcesses(Backend):
    """A pool of ``jobs`` spawned worker processes (no forked torch state), each with
    ``worker_threads(jobs)`` torch threads."""

    def __init__(self, jobs: int) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_local_worker,
                                        initargs=(worker_threads(jobs),))

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Future[Any]:
        return self.pool.submit(fn, *args)

    def wait(self, handles: Sequence[Any]) -> list[Any]:
        done, _ = futures_wait(handles, return_when=FIRST_COMPLETED)
        return list(done)

    def result(self, handle: Any) -> Any:
        return handle.result()

    def cancel(self, handles: Sequence[Any]) -> None:
        for h in handles:
            h.cancel()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
            return
        # interrupted or failed: stop the pieces in flight now rather than wait for them
        processes = list(getattr(self.pool, "_processes", {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            p.terminate()
        for p in processes:
            p.join(timeout=10)


def _local_worker(threads: int) -> None:
    """Initialise a local worker process: its threads, and Ctrl-C left to the driver (which
    stops the workers), so a terminal's SIGINT does not print a traceback from every worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_threads(threads)


def _ray_call(threads: int, fn: Callable[..., Any], *args: Any) -> Any:
    """What a Ray task runs: pin the threads to the task's CPUs, then the piece of work."""
    set_threads(threads)
    return fn(*args)


class RayTasks(Backend):
    """Each piece a Ray task with ``num_cpus`` CPUs (and ``num_gpus`` GPUs); arguments travel by
    value through the object store."""

    retries = RETRIES

    def __init__(self, ray: Any, *, num_cpus: int = 1, num_gpus: int = 0) -> None:
        from dappled.scale.cluster import cluster_cpus

        self.ray = ray
        self.threads = max(1, num_cpus)
        self.remote = ray.remote(_ray_call).options(num_cpus=num_cpus, num_gpus=num_gpus,
                                                    max_retries=RAY_TASK_RETRIES, retry_exceptions=False)
        # enough queued to keep every CPU busy (and nodes that join later), few enough that the
        # object store holds only the inputs of work about to run
        self.window = max(16, 4 * cluster_cpus(ray))

    def put(self, obj: Any) -> Any:
        return self.ray.put(obj)

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        return self.remote.remote(self.threads, fn, *args)

    def wait(self, handles: Sequence[Any]) -> list[Any]:
        # short timeouts keep the driver responsive to Ctrl-C
        ready: list[Any] = []
        while not ready:
            ready, _ = self.ray.wait(list(handles), num_returns=1, timeout=0.5)
        return ready

    def result(self, handle: Any) -> Any:
        try:
            return self.ray.get(handle)
        except self.ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, DappledError):
                raise exc.cause from None  # the one-line error, not Ray's traceback text
            raise

    def cancel(self, handles: Sequence[Any]) -> None:
        for h in handles:
            try:
                self.ray.cancel(h, force=True)
            except Exception:  # already finished, or its node is gone
                pass


def local_backend(jobs: int) -> Backend:
    """This process for one job, a process pool for more."""
    if jobs < 1:
        raise OptionError(f"--jobs must be at least 1, got {jobs}")
    return InProcess(worker_threads(1)) if jobs == 1 else LocalProcesses(jobs)


def run_all(backend: Backend, fn: Callable[..., Any], count: int,
            make_args: Callable[[int], tuple[Any, ...]], on_done: Callable[[int, Any], None], *,
            on_retry: Callable[[int, BaseException], None] | None = None) -> None:
    """Run ``fn(*make_args(i))`` for i in 0..count-1 on ``backend``; ``on_done(i, result)`` in
    the driver as each finishes (completion order), once per i.

    A piece that fails with anything but a DappledError is resubmitted up to
    ``backend.retries`` times. Any exception that escapes (a DappledError, a piece out of
    retries, KeyboardInterrupt, an exception from ``on_done``) cancels the pieces in flight
    and is raised; results already handed to ``on_done`` stay handed over.
    """
    pending: dict[Any, tuple[int, int]] = {}
    done: set[int] = set()
    next_i = 0
    try:
        while next_i < count or pending:
            while next_i < count and len(pending) < backend.window:
                pending[backend.submit(fn, make_args(next_i))] = (next_i, 0)
                next_i += 1
            for h in backend.wait(list(pending)):
                i, attempt = pending.pop(h)
                try:
                    result = backend.result(h)
                except DappledError:
                    raise
                except Exception as exc:
                    if attempt >= backend.retries:
                        raise
                    if on_retry is not None:
                        on_retry(i, exc)
                    pending[backend.submit(fn, make_args(i))] = (i, attempt + 1)
                    continue
                if i in done:
                    continue
                done.add(i)
                on_done(i, result)
    except BaseException:
        backend.cancel(list(pending))
        raise


@contextlib.contextmanager
def open_backend(*, jobs: int = 1, ray: str | None = None, device: str = "cpu") -> Iterator[Backend]:
    """The backend of a run: Ray tasks (one CPU each, and one GPU each with ``device='cuda'``) on
    the cluster at ``ray`` (with ``local``, ``jobs`` > 1 sets the CPUs of the runtime started
    here), else ``jobs`` local processes (this process for one)."""
    if ray is not None:
        from dappled.scale.cluster import LOCAL, connect

        if jobs > 1 and ray != LOCAL:
            raise OptionError("--jobs is for local runs (and --ray local); a cluster runs a task per CPU")
        with connect(ray, num_cpus=jobs if jobs > 1 else None) as r:
            backend = RayTasks(r, num_cpus=1, num_gpus=1 if device == "cuda" else 0)
            with backend:
                yield backend
        return
    with local_backend(jobs) as backend:
        yield backend
