"""CPU thread counts: the cores this process may use, and the one check every ``threads`` option
and ``$DAPPLED_THREADS`` goes through (more threads than cores only slows a fit down)."""

from __future__ import annotations

import os

from dappled.errors import OptionError


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity where the OS has one, else os.cpu_count()."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def parse_threads(value: object, what: str = "threads", *, allow_zero: bool = False) -> int:
    """A thread count from an option value (string or int), checked against the cores.

    ``allow_zero``: 0 is accepted (the caller's default). OptionError, naming ``what`` and the
    limit, on a non-integer, a negative (or zero) count, or more threads than available cores.
    """
    try:
        n = int(str(value).strip())
    except ValueError:
        raise OptionError(f"{what} must be a whole number of threads, got {value!r}") from None
    lo = 0 if allow_zero else 1
    cores = available_cores()
    if n < lo:
        raise OptionError(f"{what} must be at least {lo}, got {n}")
    if n > cores:
        raise OptionError(f"{what}={n} is more than the {cores} core(s) this machine gives this process")
    return n
