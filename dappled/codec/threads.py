"""The thread guards of the codecs, in one place: how many torch threads a fit runs and how many
numba threads a render runs, set for one block and restored afterwards.

Encoders scale out by images and groups (dappled/scale/), not by threads, so each defaults to
one thread; on a GPU neither applies. Neither guard imports torch or numba until it is used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def torch_threads(device: str, n: int) -> Iterator[None]:
    """Run a fit with n torch threads (one by default: fits scale out by images, not threads)."""
    import torch

    if device != "cpu":
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def numba_threads(device: str, n: int | None = None) -> contextlib.AbstractContextManager[None]:
    """Run a CPU render with n numba threads (None or 0: ``$DAPPLED_THREADS``, else 1; see
    ``dappled.models.splat.numba_cpu.default_threads``); nothing at all on a GPU."""
    if device != "cpu":
        return contextlib.nullcontext()
    from dappled.models.splat.numba_cpu import threads

    return threads(n)
