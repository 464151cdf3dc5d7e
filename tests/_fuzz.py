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


# ---------------------------------------------------------------- cost-guided mutants (issue 18)
#
# The mutants above change one thing at a time, so a small base stream caps what a mutant can
# declare. These change the container header and the payload together, and make the fields that
# declare sizes, counts, dimensions and architecture larger: the small leaf chunks of a payload
# (a codec's struct header: Gaussian count, network widths, escape count ...), the frame size of
# the container and its frame count. benchmarks/cost_fuzz.py stacks them on the costliest mutants
# found so far; tests/test_cost_fuzz.py runs a few.

_GROWTH = (2, 3, 4, 8, 16, 64, 256)
HEADER_LEAF_BYTES = 64
"""A leaf chunk at most this long is taken for a struct header (counts, sizes, architecture)."""


def _grow_fields(data: bytes, rng: random.Random) -> bytes:
    """1-3 fixed-size integer fields (u8/u16/u32, little endian, at random offsets) made larger:
    the value times a growth factor, plus a little, or the field's largest or half its largest."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        fmt = rng.choice(("<B", "<H", "<H", "<I", "<I"))
        size = struct.calcsize(fmt)
        if len(b) < size:
            if not b:
                break
            fmt, size = "<B", 1
        pos = rng.randrange(len(b) - size + 1)
        top = (1 << (8 * size)) - 1
        (value,) = struct.unpack_from(fmt, b, pos)
        roll = rng.random()
        if roll < 0.6:
            value = value * rng.choice(_GROWTH) + rng.randint(0, 3)
        elif roll < 0.8:
            value = value + rng.randint(1, 1 << min(16, 8 * size))
        else:
            value = rng.choice((top, top >> 1, top >> 4))
        struct.pack_into(fmt, b, pos, min(value, top))
    return bytes(b)


def _leaf_paths(payload: bytes, depth: int = 0) -> list[tuple[str, ...]]:
    """Paths (chunk tags, outermost first) of the leaves of a payload's chunk tree; () is a
    payload that is not a chunk tree itself."""
    chunks = _chunks(payload) if depth < 3 else None
    if chunks is None:
        return [()]
    return [(tag, *rest) for tag, data in chunks.items() for rest in _leaf_paths(data, depth + 1)]


def _leaf(payload: bytes, path: tuple[str, ...]) -> bytes:
    for tag in path:
        payload = unpack_chunks(payload)[tag]
    return payload


def _replace_leaf(payload: bytes, path: tuple[str, ...], data: bytes) -> bytes:
    if not path:
        return data
    chunks = unpack_chunks(payload)
    chunks[path[0]] = _replace_leaf(chunks[path[0]], path[1:], data)
    return pack_chunks(chunks)


def grow_declared(payload: bytes, rng: random.Random) -> bytes:
    """The payload with fields of one header-like leaf (at most HEADER_LEAF_BYTES, or the first
    bytes of a raw payload: an image file's own header) made larger (:func:`_grow_fields`)."""
    paths = _leaf_paths(payload)
    small = [p for p in paths if len(_leaf(payload, p)) <= HEADER_LEAF_BYTES]
    path = rng.choice(small or paths)
    data = _leaf(payload, path)
    if len(data) > HEADER_LEAF_BYTES:  # a raw payload: its header is at the start
        cut = rng.choice((16, 32, 64, 256))
        data = _grow_fields(data[:cut], rng) + data[cut:]
    else:
        data = _grow_fields(data, rng)
    try:
        return _replace_leaf(payload, path, data)
    except ValueError:
        return payload


def _grown_size(w: int, h: int, rng: random.Random, max_pixels: int) -> tuple[int, int]:
    """A larger (sometimes other-shaped) frame size within MAX_DIMENSION and `max_pixels`."""
    from dappled.limits import MAX_DIMENSION

    which = rng.randrange(4)
    fw = rng.choice(_GROWTH) if which in (0, 2) else 1
    fh = rng.choice(_GROWTH) if which in (1, 2) else 1
    if which == 3:
        w, h = rng.choice(((MAX_DIMENSION, 16), (16, MAX_DIMENSION), (4096, 4096), (3000, 3000),
                           (w + 1, h + 1)))
    w, h = min(MAX_DIMENSION, w * fw), min(MAX_DIMENSION, h * fh)
    while w * h > max_pixels and w * h > 1:
        w, h = max(1, w // 2 if w >= h else w), max(1, h // 2 if h > w else h)
    return w, h


def mutate_cost(stream: bytes, rng: random.Random, *, max_pixels: int = 1 << 26,
                max_frames: int = 64) -> bytes:
    """A CRC-valid mutant whose header and payload change together, towards declaring more: a
    larger frame size and/or more frames (frame packets repeated, within `max_frames`; frames x
    pixels within `max_pixels`), with grown header fields in a frame's payload
    (:func:`grow_declared`) and sometimes one structural payload mutation (:func:`mutate_payload`)
    on top."""
    c = unpack(stream)
    h = c.header
    packets = [p for p in c.packets if p.type != PacketType.END]
    w, hh, frames = h.width, h.height, h.frame_count
    grow_size, grow_frames = rng.random() < 0.6, rng.random() < 0.25
    if grow_size:
        w, hh = _grown_size(w, hh, rng, max_pixels // frames)
    payloads = [i for i, p in enumerate(packets) if p.type in (PacketType.FRAME, PacketType.CONFIG)]
    for _ in range(rng.choice((0, 1, 1, 2, 3)) if grow_size or grow_frames else rng.choice((1, 2, 3))):
        if payloads:
            i = rng.choice(payloads)
            p = packets[i]
            data = grow_declared(p.payload, rng) if rng.random() < 0.8 else p.payload
            if rng.random() < 0.25:
                data = mutate_payload(data, rng)
            packets[i] = Packet(p.type, data, p.frame, p.flags)
    frame_packets = [p for p in packets if p.type == PacketType.FRAME]
    room = min(max_frames, max_pixels // max(1, w * hh)) - frames  # frames x pixels <= max_pixels
    if frame_packets and grow_frames and room > 0:
        # more frames: the last frame packet (a predicted one in a video) repeated
        extra = min(room, rng.choice((1, 2, 4, 16, 64)))
        last = max(p.frame for p in frame_packets)
        src = frame_packets[-1]
        at = packets.index(src) + 1
        copies = [Packet(src.type, src.payload, last + 1 + k, src.flags) for k in range(extra)]
        packets[at:at] = copies
        frames += extra
    fps = h.fps_num if frames == 1 or h.fps_num else 25
    try:
        return pack(StreamHeader(h.codec_id, w, hh, frames, fps if frames > 1 else 0, h.fps_den,
                                 h.color_space), packets)
    except (BitstreamError, ValueError, struct.error):
        return stream
