"""Safe wrapper over CompressAI's 64-bit rANS coder (``compressai.ans``), 16-bit precision.

Each table is a :class:`CdfTable`: an integer CDF of length N+1 (``cdf[0] == 0``, strictly
increasing, ``cdf[N] == 2**16``), validated once; its symbols are the integers ``[0, N)``.

Why a wrapper: CompressAI's C++ coder trusts its input.

* Decoder over-read. ``Rans64DecInit`` reads two 32-bit words; each decoded symbol then reads at
  most one more word (``Rans64DecAdvance`` renormalises with a single ``if``). The bypass path
  (taken when the decoded symbol is the last, "overflow" entry of a CDF) reads one word per
  8 nibbles of an unbounded, data-given count, so garbage could read arbitrarily far. We never
  use the bypass: every table is passed with an extra zero-width last entry, which the decoder's
  search (first ``cdf[i] > x & 0xffff``, always found at ``i <= N``) can never select. Decoding
  ``n`` symbols thus reads at most ``4 * (n + 2)`` bytes, and the string is zero-padded to that.
* Encoder overflow. The encoder writes into ``n`` words but needs ``floor(n/2) + 2`` (two for
  the final state flush; a symbol of at most 16 bits cannot emit a word right after another
  one, nor first). ``n < 3`` corrupts the heap, so streams are padded to ``MIN_CODED`` symbols
  with a dummy table whose symbol 0 costs ~2e-5 bits. It also bounds a valid payload to
  ``4 * (floor(n/2) + 2)`` bytes, which the decoder checks.
* Out-of-range symbols would silently go through the bypass: they are rejected up front.

Trailing zero bytes of the payload are dropped (the decoder pads zeros back), so a payload
ending in a zero byte is rejected.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from dappled.errors import BitstreamError


def _load_ans() -> ModuleType:
    """CompressAI's rANS extension, without running ``compressai/__init__`` when avoidable.

    The package's ``__init__`` imports torch and all of CompressAI's models (seconds); the
    extension itself only needs the C++ runtime. Falls back to the regular import.
    """
    loaded = sys.modules.get("compressai.ans")
    if loaded is not None:
        return loaded
    try:
        spec = importlib.util.find_spec("compressai")  # locates the package, runs nothing
        for folder in (spec.submodule_search_locations or []) if spec else []:
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                path = Path(folder) / f"ans{suffix}"
                if path.is_file():
                    ext = importlib.util.spec_from_file_location("compressai.ans", path)
                    if ext is not None and ext.loader is not None:
                        module = importlib.util.module_from_spec(ext)
                        ext.loader.exec_module(module)
                        # Loading registered it; drop that so a later ``import compressai.ans``
                        # still binds the attribute on the package (same classes, cached init).
                        sys.modules.pop("compressai.ans", None)
                        return module
    except (ImportError, OSError):
        pass
    from compressai import ans

    return ans


_ans = _load_ans()
RansEncoder = _ans.RansEncoder
RansDecoder = _ans.RansDecoder

PRECISION = 16
TOTAL = 1 << PRECISION
MIN_CODED = 4  # the encoder's output buffer is only safe from 3 symbols on


def max_payload_bytes(count: int) -> int:
    """Largest payload the encoder can emit for `count` symbols (no bypass in use)."""
    if count <= 0:
        return 0
    coded = max(count, MIN_CODED)
    return 4 * (coded // 2 + 2)


def check_cdf(cdf: np.ndarray) -> None:
    """Raise ValueError unless `cdf` is a valid 16-bit CDF (0 .. 2**16, strictly increasing)."""
    c = np.asarray(cdf)
    if c.ndim != 1 or c.size < 2 or c[0] != 0 or c[-1] != TOTAL or np.any(np.diff(c) <= 0):
        raise ValueError("invalid CDF table")


class CdfTable:
    """A validated CDF, kept as the list CompressAI wants (with its zero-width bypass entry)."""

    __slots__ = ("cdf", "nsym")

    def __init__(self, cdf: np.ndarray | Sequence[int]) -> None:
        check_cdf(np.asarray(cdf))
        self.cdf: list[int] = [int(v) for v in cdf] + [TOTAL]
        self.nsym = len(self.cdf) - 2

    @classmethod
    def from_freqs(cls, freqs: np.ndarray) -> CdfTable:
        """Table of N positive frequencies summing to 2**16."""
        f = np.asarray(freqs, dtype=np.int64)
        cdf = np.zeros(f.size + 1, dtype=np.int64)
        np.cumsum(f, out=cdf[1:])
        return cls(cdf)

    def array(self) -> np.ndarray:
        """The CDF (length N+1) as an int64 array."""
        return np.array(self.cdf[:-1], dtype=np.int64)


_PAD_TABLE = CdfTable([0, TOTAL - 1, TOTAL])  # dummy padding table, symbol 0 at 65535/65536


def _prepare(
    indexes: np.ndarray, tables: Sequence[CdfTable], count: int
) -> tuple[list[int], list[list[int]], list[int], list[int]]:
    """Pad the index list to MIN_CODED with the dummy table; CompressAI's argument lists."""
    cdfs = [t.cdf for t in tables] + [_PAD_TABLE.cdf]
    sizes = [len(c) for c in cdfs]
    offsets = [0] * len(cdfs)
    idx = indexes.tolist() + [len(tables)] * (max(count, MIN_CODED) - count)
    return idx, cdfs, sizes, offsets


def _as_index_array(indexes: np.ndarray, tables: Sequence[CdfTable]) -> np.ndarray:
    if not all(isinstance(t, CdfTable) for t in tables):
        raise TypeError("tables must be CdfTable instances")
    idx = np.asarray(indexes, dtype=np.int64).ravel()
    if idx.size and (idx.min() < 0 or idx.max() >= len(tables)):
        raise ValueError("table index out of range")
    return idx


def rans_encode(symbols: np.ndarray, indexes: np.ndarray, tables: Sequence[CdfTable]) -> bytes:
    """Code symbol ``symbols[i]`` under table ``tables[indexes[i]]``; empty input gives b''."""
    sym = np.asarray(symbols, dtype=np.int64).ravel()
    idx = _as_index_array(indexes, tables)
    if sym.size != idx.size:
        raise ValueError("symbols and indexes differ in length")
    n = int(sym.size)
    if n == 0:
        return b""
    nsym = np.array([t.nsym for t in tables], dtype=np.int64)
    if sym.min() < 0 or np.any(sym >= nsym[idx]):
        raise ValueError("symbol outside its table")
    idx_list, cdfs, sizes, offsets = _prepare(idx, tables, n)
    sym_list = sym.tolist() + [0] * (len(idx_list) - n)
    out = RansEncoder().encode_with_indexes(sym_list, idx_list, cdfs, sizes, offsets)
    if len(out) > max_payload_bytes(n):  # cannot happen; the decoder relies on it
        raise AssertionError("rANS payload longer than its bound")
    return bytes(out).rstrip(b"\0")


def rans_decode(data: bytes, indexes: np.ndarray, tables: Sequence[CdfTable]) -> np.ndarray:
    """Decode ``len(indexes)`` symbols (int64 array); any input bytes are safe to pass.

    Garbage decodes to garbage symbols, each valid for its table; a payload longer than the
    encoder could have produced raises :class:`BitstreamError`.
    """
    idx = _as_index_array(indexes, tables)
    n = int(idx.size)
    if len(data) > max_payload_bytes(n):
        raise BitstreamError(f"rANS payload of {len(data)} bytes is too long for {n} symbols")
    if data and data[-1] == 0:  # the encoder strips trailing zeros: one left means tampering
        raise BitstreamError("rANS payload ends with a zero byte")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    idx_list, cdfs, sizes, offsets = _prepare(idx, tables, n)
    # Worst-case read: 2 words of initial state + 1 word per decoded symbol.
    padded = bytes(data) + bytes(4 * (len(idx_list) + 2) - len(data))
    out = RansDecoder().decode_with_indexes(padded, idx_list, cdfs, sizes, offsets)
    return np.asarray(out[:n], dtype=np.int64)
