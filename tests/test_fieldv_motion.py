"""Field video payload version 2: entropy-coded motion vectors (the MOTN chunk, docs/format.md;
version 3 keeps the coder).
Exact round trips of motion fields, fewer bytes than version 1 on real motion, version 1 streams
still decoded (to the same pixels as their version 2 transcodes), damaged motion refused or
decoded the same each time, and the decoder's work bounded by the frame, not by the bytes."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest

from dappled.codec import registry
from dappled.codec.chunks import pack_chunks, unpack_chunks
from dappled.codec.container import Packet, pack, unpack
from dappled.codec.field.video.format import (
    FRAME_I,
    MAX_VECTORS,
    PAYLOAD_VERSION,
    frame_motion,
    motion_bytes,
    pack_motion,
    pack_vhed,
    parse_motion,
    parse_vhed,
)
from dappled.codec.motion import Motion, compensate
from dappled.codec.video import decode_video
from dappled.errors import BitstreamError

ROOT = Path(__file__).resolve().parents[1]
CONFORMANCE = ROOT / "tests" / "conformance"
CARPHONE = ROOT / ".." / "shared" / "data" / "video" / "carphone_pristine.mp4"


def _field(rng: np.random.Generator, w: int, h: int, block: int, k: int, smooth: bool) -> Motion:
    """A motion field of k vectors within the frame: labels in patches (smooth) or at random."""
    rows, cols = -(-h // block), -(-w // block)
    vecs = np.stack([rng.integers(-4 * w, 4 * w + 1, k), rng.integers(-4 * h, 4 * h + 1, k)], 1)
    vecs[: k // 2] = rng.integers(-12, 13, (k // 2, 2))  # mostly small, as a search finds them
    if smooth:
        small = rng.integers(0, k, (-(-rows // 3), -(-cols // 3)))
        labels = np.kron(small, np.ones((3, 3), np.int64))[:rows, :cols]
    else:
        labels = rng.integers(0, k, (rows, cols))
    return Motion(block, vecs.astype(np.int64), labels.astype(np.int64))


def _same_field(a: Motion, b: Motion) -> bool:
    return a.block == b.block and np.array_equal(a.vectors[a.labels], b.vectors[b.labels])


@pytest.mark.parametrize("seed", range(12))
def test_motion_round_trip(seed: int) -> None:
    rng = np.random.default_rng(seed)
    w, h = int(rng.integers(8, 200)), int(rng.integers(8, 150))
    block = int(rng.choice([8, 16, 33, 255]))
    k = int(rng.integers(1, MAX_VECTORS + 1))
    m = _field(rng, w, h, block, k, smooth=bool(seed % 2))
    data = pack_motion(m, w, h)
    back = parse_motion(data, w, h)
    assert _same_field(m, back)
    used = np.unique(m.vectors[np.unique(m.labels)], axis=0)
    assert len(back.vectors) == len(used)  # the distinct vectors the blocks use, once each
    prev = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    assert np.array_equal(compensate(prev, back), compensate(prev, m))
    assert _same_field(parse_motion(pack_motion(m, w, h, version=1), w, h, version=1), m)


def test_extreme_vectors_and_sizes() -> None:
    for w, h, block in ((1, 1, 8), (7, 300, 8), (4096, 8, 255)):
        rows, cols = -(-h // block), -(-w // block)
        corners = np.array([[4 * w, 4 * h], [-4 * w, -4 * h], [4 * w, -4 * h], [0, 0]], np.int64)
        labels = np.arange(rows * cols).reshape(rows, cols) % 4
        m = Motion(block, corners, labels)
        assert _same_field(parse_motion(pack_motion(m, w, h), w, h), m)
    with pytest.raises(ValueError):  # outside the frame
        pack_motion(Motion(8, np.array([[4 * 16 + 1, 0]]), np.zeros((2, 2), np.int64)), 16, 16)
    with pytest.raises(ValueError):  # more vectors than the format allows
        pack_motion(Motion(8, np.zeros((MAX_VECTORS + 1, 2), np.int64), np.zeros((2, 2), np.int64)), 16, 16)
    with pytest.raises(ValueError):  # labels for another grid
        pack_motion(Motion(8, np.zeros((1, 2), np.int64), np.zeros((3, 2), np.int64)), 16, 16)


def test_sixty_four_new_vectors_fit_and_a_sixty_fifth_is_refused() -> None:
    w, h = 128, 64  # 16 x 8 blocks of 8
    vecs = np.stack([np.arange(MAX_VECTORS), -np.arange(MAX_VECTORS)], 1).astype(np.int64)
    labels = np.arange(128).reshape(8, 16) % MAX_VECTORS
    m = Motion(8, vecs, labels)
    assert _same_field(parse_motion(pack_motion(m, w, h), w, h), m)
    # the decoder refuses a 65th: code 65 distinct vectors by hand through the same walk
    from dappled.codec.field.video import format as fmt
    from dappled.entropy.binary import BinaryEncoder

    grid = [[(i + 16 * r, 0) for i in range(16)] for r in range(8)]  # 128 distinct vectors
    enc = BinaryEncoder(fmt._N_CTX)
    with pytest.raises(BitstreamError, match="more than 64"):
        fmt._walk_motion(enc, grid, 8, 16, w, h)
    with pytest.raises(BitstreamError, match="more than 64"):
        parse_motion(bytes([8]) + enc.getvalue(), w, h)


def _transcode(data: bytes, version: int) -> bytes:
    """The stream with every frame's VHED and MOTN rewritten in payload `version`: the same
    motion, so the same pixels."""
    c = unpack(data, registry.ids())
    w, h = c.header.width, c.header.height
    packets = []
    for p in c.packets:
        if p.type == 2:
            ch = unpack_chunks(p.payload)
            old, ftype, n_esc = parse_vhed(ch["VHED"])
            ch["VHED"] = pack_vhed(ftype, n_esc, version)
            if ftype != FRAME_I:
                m = frame_motion(ch, w, h, old)
                rest = {k: v for k, v in ch.items() if k not in ("VHED", "MOTN")}
                mv = pack_motion(m, w, h, 1) if version == 1 else motion_bytes(m, w, h)
                motion = {"MOTN": mv} if mv else {}
                ch = {"VHED": ch["VHED"], **motion, **rest}
            p = Packet(p.type, pack_chunks(ch), p.frame, p.flags)
        packets.append(p)
    return pack(c.header, packets)


def _payloads(data: bytes) -> list[bytes]:
    return [p.payload for p in unpack(data, registry.ids()).frames()]


def _sha(frames: list[np.ndarray]) -> str:
    return hashlib.sha256(b"".join(np.ascontiguousarray(f).tobytes() for f in frames)).hexdigest()


def test_version_1_and_2_streams_decode_to_the_same_pixels() -> None:
    manifest = {e["file"]: e for e in json.loads((CONFORMANCE / "manifest.json").read_text())["streams"]}
    v1 = (CONFORMANCE / "fieldv.dpl").read_bytes()
    v2 = (CONFORMANCE / "fieldv-v2.dpl").read_bytes()
    assert {unpack_chunks(p.payload)["VHED"][0] for p in unpack(v1, registry.ids()).frames()} == {1}
    assert {unpack_chunks(p.payload)["VHED"][0] for p in unpack(v2, registry.ids()).frames()} == {2}
    assert PAYLOAD_VERSION >= 3  # versions 3 and 4 (tests/test_fieldv_v3.py) write another layout
    for data, name in ((v1, "fieldv.dpl"), (v2, "fieldv-v2.dpl")):
        want = manifest[name]["sha256"]
        assert _sha(decode_video(data)) == want
        for version in (1, 2):
            assert _sha(decode_video(_transcode(data, version))) == want, (name, version)
    assert len(_transcode(v2, 1)) > len(v2)  # the same motion costs more in version 1
    assert _payloads(_transcode(_transcode(v2, 1), 2)) == _payloads(v2)  # canonical: byte for byte


def test_a_still_frame_sends_no_motion() -> None:
    """Versions 2 to 5 leave the motion out when nothing moves (version 1 always sends one)."""
    from _clips import moving_pattern

    from dappled.codec.field.video.format import parse_frame
    from dappled.codec.video import encode_video

    still = moving_pattern(1, 48, 32) * 3
    data = encode_video(still, 25, "field", dct=0, quality=4, gop=3, iterations=20, skip=0).data
    parts = [parse_frame(p.payload) for p in unpack(data, registry.ids()).frames()]
    assert [f.version for f in parts] == [3, 5, 5]  # the intra frame's layout is version 3's
    assert [("MOTN" in f.chunks) for f in parts] == [False, False, False]
    assert len(decode_video(data)) == 3


@pytest.mark.skipif(not CARPHONE.exists(), reason="no shared data (carphone_pristine.mp4)")
def test_version_2_saves_bytes_on_carphone() -> None:
    """Real motion (the encoder's search, quality 4's predicted-frame lambda, 16-pixel blocks):
    version 2 codes the same vectors in far fewer bytes (docs/results.md: ~half)."""
    from dappled.codec.field.encoder import LAMBDAS
    from dappled.codec.motion import search_motion
    from dappled.datasets.video import load_clip

    clip = load_clip(CARPHONE, 0, 4)
    v1 = v2 = 0
    for t in (1, 3):
        m = search_motion(clip[t - 1], clip[t], 16, 0.5 * 1.4 * LAMBDAS[4], search=7)
        assert len(m.vectors) > 1
        a, b = pack_motion(m, 176, 144, version=1), pack_motion(m, 176, 144)
        assert _same_field(parse_motion(b, 176, 144), m)
        v1, v2 = v1 + len(a), v2 + len(b)
    assert v2 < 0.75 * v1, (v1, v2)


def _real_chunk() -> tuple[bytes, int, int]:
    rng = np.random.default_rng(4)
    m = _field(rng, 176, 144, 16, 8, smooth=True)
    return pack_motion(m, 176, 144), 176, 144


def test_damaged_motion_is_refused_or_decoded_the_same_each_time() -> None:
    data, w, h = _real_chunk()
    rng = np.random.default_rng(5)
    bad = [data[:k] for k in range(len(data))] + [data + b"\x03"]
    for _ in range(300):
        b = bytearray(data)
        for pos in rng.integers(0, len(b), int(rng.integers(1, 3))):
            b[pos] ^= int(rng.integers(1, 256))
        bad.append(bytes(b))
    refused = 0
    for b in bad:
        try:
            m = parse_motion(b, w, h)
        except BitstreamError as e:
            assert "\n" not in str(e)
            refused += 1
            continue
        # a valid field: in range, at most MAX_VECTORS, each used, and the same every time
        assert 1 <= len(m.vectors) <= MAX_VECTORS
        assert np.all(np.abs(m.vectors[:, 0]) <= 4 * w) and np.all(np.abs(m.vectors[:, 1]) <= 4 * h)
        assert m.labels.shape == (-(-h // m.block), -(-w // m.block))
        assert set(np.unique(m.labels)) == set(range(len(m.vectors)))
        assert _same_field(parse_motion(b, w, h), m)
    assert refused > 0.8 * len(bad), (refused, len(bad))
    assert all(_raises(data[:k], w, h) for k in range(len(data)))  # every cut


def _raises(data: bytes, w: int, h: int) -> bool:
    try:
        parse_motion(data, w, h)
    except BitstreamError:
        return True
    return False


def test_garbage_motion_on_a_huge_frame_stays_bounded() -> None:
    """16 Mpixel frame, 8-pixel blocks (262,144 blocks): random bytes are refused quickly (new
    vectors run out at 64), and the longest valid decode, every block taking its left
    neighbour's vector, is a few decisions per block, whatever the bytes."""
    w = h = 4096
    rng = np.random.default_rng(0)
    t0 = time.process_time()
    for n in (0, 1, 16, 4000):
        with pytest.raises(BitstreamError):
            parse_motion(bytes([8]) + rng.integers(1, 256, n, dtype=np.uint8).tobytes(), w, h)
    assert time.process_time() - t0 < 5
    m = Motion(8, np.array([[3, -1]], np.int64), np.zeros((512, 512), np.int64))
    data = pack_motion(m, w, h)
    assert len(data) < 64  # 262,144 blocks that all move alike
    t0 = time.process_time()
    assert _same_field(parse_motion(data, w, h), m)
    assert time.process_time() - t0 < 20
