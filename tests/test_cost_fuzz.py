"""Issue 18, cost-guided fuzzing (the long run is benchmarks/cost_fuzz.py): a few deterministic
cost-guided cases per codec, the costliest streams a long run kept (tests/cost_corpus/), and the
crafted streams it led to (splat video frames x Gaussians x coverage, rat's pixel cap). Every
decode ends in pixels or a BitstreamError, within the budget its decoder declared."""

from __future__ import annotations

import dataclasses
import struct
import sys
import tracemalloc
from pathlib import Path

import pytest
from _cli import one_line_error, run_dappled

from dappled.codec import api, registry
from dappled.codec.chunks import pack_chunks, unpack_chunks
from dappled.codec.container import Packet, PacketType, StreamHeader, pack, unpack
from dappled.errors import InputError, LimitError

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).parent / "cost_corpus"
sys.path.insert(0, str(ROOT / "benchmarks"))
import cost_fuzz  # noqa: E402  (benchmarks/cost_fuzz.py)

SEEDS = cost_fuzz.seeds()
CASES = 5  # per codec: seconds in all


@pytest.fixture(scope="module", autouse=True)
def warm() -> None:
    """Imports, weights and compiled code of every decoder, before anything is measured."""
    for streams in SEEDS.values():
        for data in streams:
            cost_fuzz.measure(data)


def _check(res: dict) -> None:
    assert res["kind"] in ("decoded", "refused"), res  # not error, memory, over-memory, over-time


def test_the_corpus_seeds_every_stream_writing_codec() -> None:
    assert set(SEEDS) == set(registry.names(streams=True))


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_cost_guided_mutants_decode_or_are_refused_within_their_budget(name: str) -> None:
    corpus = cost_fuzz.Corpus(SEEDS[name], keep=4)
    seen: list[dict] = []

    def decode(data: bytes) -> dict:
        res = cost_fuzz.measure(data)
        seen.append(res)
        return res

    tally = cost_fuzz.run_cases(decode, {name: corpus}, CASES, seed=18, max_pixels=1 << 18, max_frames=8)
    assert sum(tally[name].counts.values()) == CASES
    for res in seen:
        _check(res)
    if any(res["kind"] == "decoded" for res in seen):  # the corpus grows with what decoded
        assert corpus.by_time and corpus.by_mem


def test_the_cost_mutants_change_header_and_payload_together() -> None:
    import random

    from _fuzz import mutate_cost

    base = (Path(__file__).parent / "conformance" / "splat.dpl").read_bytes()
    c0 = unpack(base)
    both = 0
    for k in range(40):
        c = unpack(mutate_cost(base, random.Random(k)))  # CRC-valid: only the codec can object
        header = (c.header.width, c.header.height, c.header.frame_count) != (
            c0.header.width, c0.header.height, c0.header.frame_count)
        payload = c.frames()[0].payload != c0.frames()[0].payload
        both += header and payload
        assert c.header.width * c.header.height * c.header.frame_count <= 1 << 26
    assert both >= 10


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.dpl")), ids=lambda p: p.name)
def test_the_costliest_streams_found_stay_within_their_budget(path: Path) -> None:
    _check(cost_fuzz.measure(path.read_bytes()))


# ---------------------------------------------------------------- splat video: frames x Gaussians x coverage


def _splatv() -> tuple[StreamHeader, list[Packet]]:
    c = unpack((Path(__file__).parent / "conformance" / "splatv.dpl").read_bytes())
    return c.header, [p for p in c.packets if p.type in (PacketType.CONFIG, PacketType.FRAME)]


def _refused_small(data: bytes, match: str) -> None:
    from dappled.codec.video import decode_video

    tracemalloc.start()
    try:
        with pytest.raises(LimitError, match=match):
            decode_video(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20, peak


def test_the_splat_video_budget_counts_frames_and_gaussians() -> None:
    header, packets = _splatv()
    codec = registry.by_id(header.codec_id)
    one = codec.decode_budget(header, packets)
    frames = [p for p in packets if p.type == PacketType.FRAME]
    more = packets + [dataclasses.replace(frames[-1], frame=3 + k) for k in range(5)]
    five_more = codec.decode_budget(dataclasses.replace(header, frame_count=8), more)
    per_p = codec.decode_budget(header, [frames[-1]])
    assert five_more.macs == one.macs + 5 * per_p.macs and five_more.bytes == one.bytes
    big = dataclasses.replace(header, width=1024, height=1024)
    assert codec.decode_budget(big, packets).macs > 100 * one.macs  # coverage grows with the frame


def test_a_splat_video_frame_over_the_budget_is_refused_before_it_is_decoded() -> None:
    """A ~270-byte intra frame of a few dozen Gaussians declared at 8192x8192 (64 Mpixel: 1 GB
    of float accumulators, which the decoder used to allocate before refusing the next frame)."""
    header, packets = _splatv()
    stream = pack(dataclasses.replace(header, width=8192, height=8192), packets)
    _refused_small(stream, r"needs [\d.]+ GMAC / [\d.]+ GB, over the decoder's limit")


def test_a_predicted_frame_declaring_huge_counts_is_refused_before_it_is_decoded() -> None:
    """A predicted frame whose reference count says 2**32 - 1 Gaussians, at 2048x2048 (its
    state could be 4 M Gaussians, 1.6 GB with their row table): refused from its chunk headers,
    after the intra frame before it decoded."""
    header, packets = _splatv()
    i = next(i for i, p in enumerate(packets) if p.type == PacketType.FRAME and p.frame == 1)
    chunks = unpack_chunks(packets[i].payload)
    version, ftype, _ = struct.unpack("<BBI", chunks["VHED"])
    chunks["VHED"] = struct.pack("<BBI", version, ftype, 0xFFFFFFFF)
    packets[i] = dataclasses.replace(packets[i], payload=pack_chunks(chunks))
    # the intra frame fits (a few dozen Gaussians) and decodes; the predicted one does not
    big = dataclasses.replace(header, width=2048, height=2048)
    dec = registry.by_id(header.codec_id).make_decoder(big)
    for p in packets[:i]:
        dec.decode(p)
    tracemalloc.start()
    try:
        with pytest.raises(LimitError, match="GB, over the decoder's limit"):
            dec.decode(packets[i])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20, peak


# ---------------------------------------------------------------- rat: the pixel cap


def _rat_stream(width: int, height: int) -> bytes:
    c = unpack((Path(__file__).parent / "conformance" / "rat.dpl").read_bytes())
    return pack(dataclasses.replace(c.header, width=width, height=height), c.frames())


def test_rat_frames_over_the_pixel_cap_are_refused_before_anything_is_allocated(tmp_path: Path) -> None:
    from dappled.codec.rat.codec import MAX_PIXELS, RatCodec

    assert 9_000_000 <= MAX_PIXELS <= 10_000_000
    stream = _rat_stream(3136, 3072)  # 9.6 Mpixel, one 64-pixel column over 3072x3072
    c = unpack(stream)
    tracemalloc.start()
    try:
        with pytest.raises(LimitError, match="over the rat codec's limit"):  # by the codec's cap
            api.decode_image(stream)
        with pytest.raises(LimitError, match=f"over the rat codec's limit of {MAX_PIXELS} pixels"):
            RatCodec().decode_image(c.header, c.packets)
        small = dataclasses.replace(c.header, width=3073, height=3072)  # padded 3136x3072: 9.63 M
        with pytest.raises(LimitError, match=f"3073x3072 .padded to 3136x3072. is over the rat codec's "
                                             f"limit of {MAX_PIXELS}"):
            RatCodec().decode_image(small, c.packets)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20
    src = tmp_path / "big.dpl"
    src.write_bytes(stream)
    res = run_dappled("decode", str(src), "-o", str(tmp_path / "out.png"))
    one_line_error(res, "over the rat codec's limit of")
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("shape", [(3072, 3072), (4096, 2304), (3000, 3000), (16384, 576), (576, 16384),
                                   (1024, 1024), (64, 16384)])
def test_every_rat_frame_within_the_cap_fits_the_decode_budget(shape: tuple[int, int]) -> None:
    """The largest frames, of any shape, decode in strips: their memory stays near the largest
    single-strip frame's (1 Mpixel), about a third of the limit."""
    from dappled.codec.rat.codec import check_frame_size

    w, h = shape
    check_frame_size(w, h)  # within the cap: the encoder writes it
    c = unpack(_rat_stream(w, h))
    codec = registry.by_id(c.header.codec_id)
    b = codec.check_budget(c.header, c.packets)  # no LimitError: the encoder's largest decodes
    assert 0.3e9 < b.bytes < 0.55e9


def test_the_rat_work_counts_the_strips_halos_and_every_legitimate_shape_fits_the_limit() -> None:
    """The declared MACs follow the strips (halos and the centers' pass counted, issue 18's
    leftover: they were those of one whole-frame pass); the widest and tallest legitimate frames,
    which the strips cost most, still fit the codec's work limit."""
    from dappled.codec.rat.codec import (
        BUDGET_MACS_PER_PIXEL,
        MAX_PIXELS,
        RatCodec,
        strip_rows,
        synthesis_macs,
    )

    assert synthesis_macs(1024, 1024) == BUDGET_MACS_PER_PIXEL * 1024 * 1024  # one strip: the frame
    worst = 0
    for w in range(64, 16384 + 1, 64):
        top = MAX_PIXELS // w // 64 * 64
        for h in {64, 1024, top - 64, top}:
            if 64 <= h and h * w <= MAX_PIXELS:
                m = synthesis_macs(h, w)
                if strip_rows(h, w)[0] < h // 16:  # in strips: more than one pass over the frame
                    assert m > BUDGET_MACS_PER_PIXEL * h * w, (h, w)
                worst = max(worst, m)
    assert worst <= RatCodec.decode_max_macs < 1.05 * worst


def test_rat_images_over_the_pixel_cap_are_refused_before_encoding() -> None:
    import numpy as np

    image = np.zeros((3072, 3136, 3), np.uint8)
    with pytest.raises(InputError, match=r"3136x3072 .padded to 3136x3072. is over the rat codec's limit"):
        api.encode_image(image, "rat")


# ---------------------------------------------------------------- splat: the render's row table


def _tall_splat_stream(n: int, width: int, height: int) -> bytes:
    """`n` Gaussians as thin as the quantizer allows across and as tall as it allows (each box a
    few columns by the whole height): the render's row table holds n x height rows."""
    import numpy as np

    from dappled.codec.container import KEYFRAME, ColorSpace
    from dappled.codec.splat.format import pack_gaussians
    from dappled.models.splat.symbols import LOG_SCALE_MAX, LOG_SCALE_MIN, QuantConfig, QuantizedGaussians

    cfg = QuantConfig()
    rng = np.random.default_rng(0)
    scale = 1 << cfg.pos_frac_bits
    x = rng.integers(0, width, n) * scale + scale // 2
    y = rng.integers(0, height, n) * scale
    lo = int(np.floor(LOG_SCALE_MIN / cfg.log_scale_step))
    hi = int(np.ceil(LOG_SCALE_MAX / cfg.log_scale_step)) - 1
    q = QuantizedGaussians(x, y, np.full(n, lo), np.full(n, hi), np.zeros(n, np.int64),
                           np.zeros((n, 3), np.int64))
    payload = pack_chunks(pack_gaussians(q, cfg, width, height))
    codec_id = unpack((Path(__file__).parent / "conformance" / "splat.dpl").read_bytes()).header.codec_id
    return pack(StreamHeader(codec_id, width, height, 1, 0, 1, ColorSpace.RGB),
                [Packet(PacketType.FRAME, payload, 0, KEYFRAME)])


def test_the_splat_budget_holds_the_row_table_of_tall_gaussians() -> None:
    """5,800 tall Gaussians in 7.7 kB at 64x4096 render with 24 M rows (0.57 GB of row table, 2.9
    s): within the coverage cap, so they decode, and the budget now says so (it said 8 MB)."""
    from dappled.codec.splat.decoder import ROW_BYTES

    stream = _tall_splat_stream(5800, 64, 4096)
    c = unpack(stream)
    b = registry.by_id(c.header.codec_id).check_budget(c.header, c.packets)
    assert b.bytes >= ROW_BYTES * 5800 * 4096 > 500e6


def test_tall_gaussians_beyond_the_row_cap_are_refused_before_rendering() -> None:
    """11,600 of them at 128x4096 (14.7 kB): 44.6 M rows, 1.07 GB of row table, which the old
    decoder allocated (1.24 GB peak RSS against a declared 16 MB); refused before rendering."""
    stream = _tall_splat_stream(11600, 128, 4096)
    tracemalloc.start()
    try:
        with pytest.raises(LimitError, match=r"boxes span \d+ rows of the 128x4096 image"):
            api.decode_image(stream)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, peak
