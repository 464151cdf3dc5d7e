"""Which compute devices this machine has, asked cheaply: torch is imported only where an NVIDIA
device node exists, so a CPU-only decode never pays for torch's start-up."""

from __future__ import annotations

import functools
import glob


@functools.cache
def cuda_available() -> bool:
    """True when torch is installed and sees a CUDA GPU."""
    if not glob.glob("/dev/nvidia[0-9]*"):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
