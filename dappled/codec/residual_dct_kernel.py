"""The transform residual's level decoding in numba: :func:`dappled.codec.residual_dct.walk_levels`
decoding, with the adaptive binary decoder of :mod:`dappled.entropy.binary` inlined (the same
integer arithmetic, so the same levels; tests hold it to the Python walk)."""

from __future__ import annotations

import numba
import numpy as np

from dappled.entropy.rans_flat import dec_advance

_TOTAL = 1 << 16
_HALF = _TOTAL >> 1
_MASK = _TOTAL - 1


@numba.njit(cache=True, nogil=True)
def _bit(st: np.ndarray, p: np.ndarray, ctx: int, words: np.ndarray) -> int:
    """One decision under context ctx; st = [x, pos] (the binary decoder's state)."""
    q = p[ctx]
    if (st[0] & _MASK) >= q:
        st[0], st[1] = dec_advance(st[0], st[1], words, q, _TOTAL - q)
        p[ctx] = q - (q >> 4)
        return 1
    st[0], st[1] = dec_advance(st[0], st[1], words, 0, q)
    p[ctx] = q + ((_TOTAL - q) >> 4)
    return 0


@numba.njit(cache=True, nogil=True)
def _bits(st: np.ndarray, n: int, words: np.ndarray) -> int:
    v = 0
    for _ in range(n):
        b = 1 if (st[0] & _MASK) >= _HALF else 0
        st[0], st[1] = dec_advance(st[0], st[1], words, _HALF * b, _HALF)
        v = 2 * v + b
    return v


@numba.njit(cache=True, nogil=True)
def decode_levels(words: np.ndarray, rows: int, cols: int, band: np.ndarray, n_ctx: int, cbf: int, sig: int,
                  last: int, gt1: int, rem: int, nb: int, rem_prefix: int, max_bits: int
                  ) -> tuple[np.ndarray, int, int]:
    """The levels (3, rows, cols, 64) of a coded residual's words, and the decoder's final (x, pos)
    for the caller's end check."""
    out = np.zeros((3, rows, cols, 64), np.int64)
    coded = np.zeros((3, rows, cols), np.int64)
    p = np.full(n_ctx, _HALF, np.int64)
    st = np.zeros(2, np.int64)
    w0 = words[0] if words.size > 0 else 0
    w1 = words[1] if words.size > 1 else 0
    st[0] = w0 | ((w1 & 0x7FFFFFFF) << 32)
    st[1] = 2
    pos = np.zeros(64, np.int64)
    for r in range(rows):
        for c in range(cols):
            for ch in range(3):
                around = (coded[ch, r, c - 1] if c else 0) + (coded[ch, r - 1, c] if r else 0)
                if not _bit(st, p, cbf + 3 * ch + around, words):
                    continue
                coded[ch, r, c] = 1
                n = 0
                i = 0
                while i < 63:
                    if _bit(st, p, sig + nb * ch + band[i], words):
                        pos[n] = i
                        n += 1
                        if _bit(st, p, last + nb * ch + band[i], words):
                            break
                    i += 1
                if i == 63:
                    pos[n] = 63
                    n += 1
                ones = 0
                greater = 0
                for k in range(n):
                    ctx = gt1 + 5 * ch + (4 if greater else min(ones, 3))
                    if _bit(st, p, ctx, words):
                        greater += 1
                        base = rem + (1 + rem_prefix) * ch
                        a = 2
                        if _bit(st, p, base, words):
                            m = 1
                            while m < max_bits and _bit(st, p, base + min(m, rem_prefix), words):
                                m += 1
                            a += (1 << (m - 1)) | _bits(st, m - 1, words)
                    else:
                        a = 1
                        ones += 1
                    out[ch, r, c, pos[k]] = -a if _bits(st, 1, words) else a
    return out, st[0], st[1]
