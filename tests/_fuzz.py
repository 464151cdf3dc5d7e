"""Structure-aware stream fuzzing (issue 10): CRC-valid streams whose fields hold random values.

Starting from a real stream of a codec, :func:`mutate` changes what the codec parses rather than
bytes the container's CRC would catch: it walks the payload's chunk tree (``codec/chunks.py``),
and replaces a leaf with a *valid* categorical stream of random symbols (random count, range and
values), writes extreme or random values into fixed-size fields (u8/u16/u32 at any offset),
truncates, extends, drops, duplicates or renames chunks; or it changes the container header
(size, frame count, rate) or the packet fields. The container is rebuilt with correct CRCs, so
only the codec's own checks stand between the stream and its decoder. Used by the CI test
(tests/test_fuzz.py, with hypothesis) and the long run (benchmarks/fuzz_decoders.py).
"""

from __future__ import annotations

import random
import struct

import numpy as np

from dappled.codec.chunks import pack_chunks, unpack_chunks
from dappled.codec.container import Packet, PacketType, StreamHeader, pack, unpack
from dappled.entropy import encode_symbols
from dappled.errors import BitstreamError

_EXTREMES = (0, 1, 2, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def _chunks(data: bytes) -> dict[str, bytes] | None:
    """The chunk dict of `data` when it is a well-formed chunk payload with printable tags."""
    try:
        chunks = unpack_chunks(data)
    except BitstreamError:
        return None
    if not chunks or not all(t.isascii() and t.isprintable() for t in chunks):
        return None
    return chunks


def _random_symbols(rng: random.Random) -> bytes:
    """A valid categorical stream: random count, span and values (some huge, some negative)."""
    n = rng.choice((0, 1, 2, 3, rng.randint(4, 64), rng.randint(64, 4096)))
    bits = rng.choice((1, 2, 4, 8, 16, 24, 40, 62))
    lo = rng.choice((0, -(1 << (bits - 1)), rng.randint(-(1 << bits), 1 << bits)))
    span = rng.randint(0, (1 << bits) - 1)
    vals = np.array([lo + rng.randint(0, span) for _ in range(min(n, 64))], np.int64)
    if n > 64:
        vals = np.resize(vals, n)
    return encode_symbols(vals)


def _poke_fields(data: bytes, rng: random.Random) -> bytes:
    """Write 1-3 fixed-size integer fields (u8/u16/u32, little endian) with extreme or random
    values at random offsets: what a struct header's fields would hold."""
    b = bytearray(data)
    if not b:
        return bytes(b)
    for _ in range(rng.randint(1, 3)):
        fmt = rng.choice(("<B", "<H", "<I"))
        size = struct.calcsize(fmt)
        if len(b) < size:
            fmt, size = "<B", 1
        pos = rng.randint(0, len(b) - size)
        top = (1 << (8 * size)) - 1
        value = rng.choice([v & top for v in _EXTREMES] + [rng.randint(0, top)])
        struct.pack_into(fmt, b, pos, value)
    return bytes(b)


def _mutate_leaf(data: bytes, rng: random.Random) -> bytes:
    op = rng.randrange(7)
    if op == 0:
        return _random_symbols(rng)
    if op == 1:
        return _poke_fields(data, rng)
    if op == 2:
        return data[: rng.randint(0, max(0, len(data) - 1))]
    if op == 3:
        return data + bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
    if op == 4:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 2 * len(data) + 8)))
    if op == 5 and data:
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return bytes(b)
    return _poke_fields(data, rng)


def mutate_payload(payload: bytes, rng: random.Random, depth: int = 0) -> bytes:
    """One structural mutation somewhere in a payload's chunk tree (or of the raw payload)."""
    chunks = _chunks(payload) if depth < 3 else None
    if chunks is None:
        return _mutate_leaf(payload, rng)
    tags = list(chunks)
    op = rng.randrange(10)
    if op == 0 and len(tags) > 1:  # drop a chunk
        del chunks[rng.choice(tags)]
    elif op == 1:  # duplicate one under another name / rename
        tag = rng.choice(tags)
        data = chunks.pop(tag)
        chunks[rng.choice(tags) if rng.random() < 0.5 else "ZZZZ"] = data
    elif op == 2:  # reorder
        rng.shuffle(tags)
        chunks = {t: chunks[t] for t in tags}
    else:  # descend into one chunk
        tag = rng.choice(tags)
        chunks[tag] = mutate_payload(chunks[tag], rng, depth + 1)
    try:
        return pack_chunks(chunks)
    except ValueError:
        return payload


def mutate(stream: bytes, rng: random.Random) -> bytes:
    """A CRC-valid mutant of a valid stream (see the module docstring)."""
    c = unpack(stream)
    h = c.header
    packets = list(c.packets)
    roll = rng.random()
    if roll < 0.08:  # the container header: declared size, frames, rate
        w, hh = h.width, h.height
        which = rng.randrange(4)
        if which == 0:
            w = rng.choice((1, 2, w + 1, max(1, w - 1), rng.randint(1, 4096)))
        elif which == 1:
            hh = rng.choice((1, 2, hh + 1, max(1, hh - 1), rng.randint(1, 4096)))
        elif which == 2:
            w, hh = rng.choice(((16384, 16), (16, 16384), (2048, 2048), (4096, 4096)))
        frames = h.frame_count if rng.random() < 0.7 else rng.choice((1, 2, h.frame_count + 1, 1000))
        h = StreamHeader(h.codec_id, w, hh, frames, h.fps_num if frames > 1 else 0, h.fps_den, h.color_space)
    elif roll < 0.16 and packets:  # packet fields: frame index, flags, type, order, count
        i = rng.randrange(len(packets))
        p = packets[i]
        which = rng.randrange(5)
        if which == 0:
            packets[i] = Packet(p.type, p.payload, rng.choice((0, 1, p.frame + 1, 0xFFFFFFFF)), p.flags)
        elif which == 1:
            packets[i] = Packet(p.type, p.payload, p.frame, rng.randrange(256))
        elif which == 2:
            packets.insert(i, Packet(rng.choice(list(PacketType)), _random_symbols(rng), p.frame, p.flags))
        elif which == 3 and len(packets) > 1:
            del packets[i]
        else:
            packets.insert(i, p)
    else:  # a payload: the codec's own structure
        frames = [i for i, p in enumerate(packets) if p.type in (PacketType.FRAME, PacketType.CONFIG)]
        if frames:
            i = rng.choice(frames)
            p = packets[i]
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                p = Packet(p.type, mutate_payload(p.payload, rng), p.frame, p.flags)
            packets[i] = p
    try:
        return pack(h, [p for p in packets if p.type != PacketType.END])
    except (BitstreamError, ValueError, struct.error):
        return stream
