"""Connecting to Ray: ``local`` starts a runtime on this machine, anything else is the address of
an existing cluster (``auto``, ``HOST:PORT``, ``ray://HOST:10001``).

Ray is an optional extra (``pip install 'dappled[ray]'``); without it, asking for ``--ray`` is an
OptionError naming the extra. Workers import ``dappled`` from the same place as the driver
when that place exists on the worker's machine (the job's ``PYTHONPATH`` names it), so a source
checkout works on a local cluster without installing; on other machines ``dappled`` must be
installed (docs/scale.md).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dappled.errors import DappledError, OptionError

LOCAL = "local"
# object store of a runtime started by `--ray local`: images, frames and streams are small, and
# the machine is shared; Ray's default is 30 % of the memory
LOCAL_OBJECT_STORE_BYTES = 256 * 1024 * 1024


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise OptionError("--ray needs Ray: pip install 'dappled[ray]'") from None
    return ray


def package_root() -> Path:
    """The folder that holds the ``dappled`` package the driver runs."""
    import dappled

    return Path(dappled.__file__).resolve().parent.parent


def runtime_env() -> dict[str, Any]:
    """The job's runtime environment: workers put the driver's package folder first on their path
    (a worker where that folder does not exist falls back to its installed dappled)."""
    path = [str(package_root())]
    if os.environ.get("PYTHONPATH"):
        path.append(os.environ["PYTHONPATH"])
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(path)}}


@contextlib.contextmanager
def connect(address: str, *, num_cpus: int | None = None) -> Iterator[Any]:
    """Connect to the Ray cluster at ``address`` (or start one with ``local``) for the duration of
    the block; yields the ``ray`` module. A runtime this call started or joined is shut down
    afterwards; one already initialised by the caller is used as it is and left running."""
    ray = _import_ray()
    if not address or not address.strip():
        raise OptionError("--ray wants an address: local, auto, HOST:PORT or ray://HOST:PORT")
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"runtime_env": runtime_env(), "log_to_driver": False,
                              "configure_logging": False}
    if address == LOCAL:
        kwargs.update(address="local", num_cpus=num_cpus or os.cpu_count() or 1,
                      object_store_memory=LOCAL_OBJECT_STORE_BYTES, include_dashboard=False)
    else:
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except DappledError:
        raise
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        raise OptionError(f"cannot connect to the Ray cluster at {address!r} ({exc})") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_cpus(ray: Any) -> int:
    """CPUs of the whole cluster as Ray counts them (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))
