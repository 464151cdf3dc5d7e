"""rANS coding one symbol at a time inside numba, for autoregressive models.

CompressAI's coder (:mod:`dappled.entropy.rans`) takes whole index lists; an autoregressive
decoder needs the probabilities of symbol i before it can compute those of symbol i + 1, so it
has to decode symbol by symbol in compiled code. This module is the same Rans64 coder
(16-bit precision, 32-bit words, state in [2**31, 2**63)) written for numba, over a *table set*:
all CDFs concatenated in one int64 array, table t at ``cdf[start[t] : start[t] + nsym[t] + 1]``.
Its encoder's bytes are those of ``compressai.ans.RansEncoder.encode_with_indexes`` for the same
symbols and tables (tested), so the format is CompressAI's.

Safety: the decoder reads words through :func:`dec_word`, which returns 0 past the end, so
garbage input decodes to garbage symbols, each valid for its table, in bounded time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

from dappled.entropy.rans import PRECISION, CdfTable

_MASK = (1 << PRECISION) - 1
_RANS_L = 1 << 31
RANS_L = _RANS_L  # the encoder's initial state: a decoder that took every symbol off ends there
_WORD = (1 << 32) - 1


def flatten_tables(tables: Sequence[CdfTable]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cdf, start, nsym) arrays of a table set, in the layout the numba coder reads."""
    nsym = np.array([t.nsym for t in tables], dtype=np.int64)
    start = np.zeros(len(tables), dtype=np.int64)
    if len(tables) > 1:
        np.cumsum(nsym[:-1] + 1, out=start[1:])
    cdf = np.concatenate([t.array() for t in tables]) if tables else np.zeros(0, np.int64)
    return cdf.astype(np.int64), start, nsym


@numba.njit(cache=True, nogil=True)
def enc_put(x: int, words: np.ndarray, n_words: int, cum: int, freq: int) -> tuple[int, int]:
    """Push one symbol (start `cum`, frequency `freq`) onto state x; words are emitted backwards
    into ``words`` (filled from the end: ``n_words`` counts them). Returns (x, n_words)."""
    x_max = ((_RANS_L >> PRECISION) << 32) * freq
    if x >= x_max:
        words[words.size - 1 - n_words] = x & _WORD
        n_words += 1
        x >>= 32
    x = ((x // freq) << PRECISION) + (x % freq) + cum
    return x, n_words


@numba.njit(cache=True, nogil=True)
def enc_flush(x: int, words: np.ndarray, n_words: int) -> int:
    """Write the final state (two words); returns the word count. Output: ``words[-count:]``."""
    words[words.size - 1 - n_words] = x >> 32
    words[words.size - 2 - n_words] = x & _WORD
    return n_words + 2


@numba.njit(cache=True, nogil=True)
def encode_flat(symbols: np.ndarray, table_ids: np.ndarray, cdf: np.ndarray,
                start: np.ndarray) -> np.ndarray:
    """Code symbols[i] under table table_ids[i] (all in range: the caller checks); the words."""
    n = symbols.size
    words = np.zeros(n + 2, dtype=np.int64)  # at most one word per symbol, plus the flush
    x = np.int64(_RANS_L)
    n_words = 0
    for i in range(n - 1, -1, -1):
        base = start[table_ids[i]] + symbols[i]
        x, n_words = enc_put(x, words, n_words, cdf[base], cdf[base + 1] - cdf[base])
    n_words = enc_flush(x, words, n_words)
    return words[words.size - n_words :]


@numba.njit(cache=True, nogil=True)
def dec_word(words: np.ndarray, pos: int) -> int:
    """Word `pos` of the stream, 0 past its end (garbage-safe reads)."""
    if pos < words.size:
        return words[pos]
    return 0


@numba.njit(cache=True, nogil=True)
def dec_init(words: np.ndarray) -> tuple[int, int]:
    """Decoder state from the first two words: (x, next word position)."""
    return dec_word(words, 0) | ((dec_word(words, 1) & 0x7FFFFFFF) << 32), 2


@numba.njit(cache=True, nogil=True)
def dec_symbol(x: int, pos: int, words: np.ndarray, cdf: np.ndarray, first: int,
               nsym: int) -> tuple[int, int, int]:
    """Decode one symbol under the table at cdf[first : first + nsym + 1]: (symbol, x, pos)."""
    cf = x & _MASK
    lo = 0
    hi = nsym  # invariant: cdf[first + lo] <= cf < cdf[first + hi]
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if cdf[first + mid] <= cf:
            lo = mid
        else:
            hi = mid
    c0 = cdf[first + lo]
    x, pos = dec_advance(x, pos, words, c0, cdf[first + lo + 1] - c0)
    return lo, x, pos


@numba.njit(cache=True, nogil=True)
def dec_advance(x: int, pos: int, words: np.ndarray, cum: int, freq: int) -> tuple[int, int]:
    """Take the symbol of interval [cum, cum + freq) off state x, whose ``x & 0xffff`` lies in it
    (the caller found it): the next (x, pos), a word pulled in when x falls below 2**31."""
    x = freq * (x >> PRECISION) + (x & _MASK) - cum
    if x < _RANS_L:
        x = ((x << 32) | dec_word(words, pos)) & 0x7FFFFFFFFFFFFFFF
        pos += 1
    return x, pos


@numba.njit(cache=True, nogil=True)
def encode_intervals(cums: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Code symbol i as the interval [cums[i], cums[i] + freqs[i]) of 2**16 (models the caller
    computed, adaptive ones included); the words, as :func:`encode_flat`'s. The caller checks
    ``freqs >= 1`` and ``cums + freqs <= 2**16``."""
    n = cums.size
    words = np.zeros(n + 2, dtype=np.int64)
    x = np.int64(_RANS_L)
    n_words = 0
    for i in range(n - 1, -1, -1):
        x, n_words = enc_put(x, words, n_words, cums[i], freqs[i])
    n_words = enc_flush(x, words, n_words)
    return words[words.size - n_words :]


@numba.njit(cache=True, nogil=True)
def decode_flat(words: np.ndarray, table_ids: np.ndarray, cdf: np.ndarray, start: np.ndarray,
                nsym: np.ndarray) -> np.ndarray:
    """Decode len(table_ids) symbols (the inverse of :func:`encode_flat`)."""
    out = np.empty(table_ids.size, dtype=np.int64)
    x, pos = dec_init(words)
    for i in range(table_ids.size):
        t = table_ids[i]
        s, x, pos = dec_symbol(x, pos, words, cdf, start[t], nsym[t])
        out[i] = s
    return out


def words_to_bytes(words: np.ndarray) -> bytes:
    """32-bit words (int64 holding values < 2**32) as little-endian bytes, as CompressAI writes."""
    return np.asarray(words, dtype="<u4").tobytes()


def bytes_to_words(data: bytes) -> np.ndarray:
    """Little-endian bytes to int64 words; a ragged tail is zero-padded (garbage-safe)."""
    pad = (-len(data)) % 4
    return np.frombuffer(bytes(data) + bytes(pad), dtype="<u4").astype(np.int64)
