"""Issue 18: every decode's work and peak memory are computed from the stream's header before
anything image-sized is allocated, and refused beyond the decoder's limit; the field decoder's
legitimate maximum fits that limit (strip synthesis), `dappled info` reports the budget and
allocates no more than the stream's size justifies. The crafted streams are those of
benchmarks/decode_budget.py, at sizes that keep these tests fast."""

from __future__ import annotations

import dataclasses
import importlib.util
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from _cli import one_line_error, run_dappled

from dappled.codec import api, registry
from dappled.codec.container import StreamHeader, pack, unpack
from dappled.codec.field.decoder import payload_budget
from dappled.codec.field.format import pack_payload
from dappled.errors import EncodeError, LimitError
from dappled.models.field.layout import MAX_MACS_PER_PIXEL, PRESETS, arch_macs_per_pixel

_spec = importlib.util.spec_from_file_location(
    "decode_budget", Path(__file__).parents[1] / "benchmarks" / "decode_budget.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _resized(stream: bytes, width: int, height: int) -> bytes:
    c = unpack(stream)
    h = c.header
    return pack(StreamHeader(h.codec_id, width, height, 1, h.fps_num, h.fps_den, h.color_space), c.frames())


def test_the_presets_fit_the_architecture_cap_and_the_crafted_ones_do_not() -> None:
    assert max(arch_macs_per_pixel(a) for a in PRESETS.values()) <= MAX_MACS_PER_PIXEL
    assert arch_macs_per_pixel(bench.LARGEST_ARM) > MAX_MACS_PER_PIXEL
    assert arch_macs_per_pixel(bench.WIDEST_SYNTHESIS) > MAX_MACS_PER_PIXEL


@pytest.mark.parametrize("arch", ["LARGEST_ARM", "WIDEST_SYNTHESIS"])
def test_architectures_beyond_the_presets_are_refused_before_anything_is_decoded(arch: str) -> None:
    # the same payload claims 4096x4096: refused at its header, so in a few kilobytes
    stream = _resized(bench.field_stream(getattr(bench, arch), 64, PRESETS["low"]), 4096, 4096)
    tracemalloc.start()
    try:
        for call in (api.decode_image, api.inspect):
            with pytest.raises(LimitError, match="MAC/pixel, over the decoder's limit"):
                call(stream)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20


def test_an_escape_bomb_is_refused_before_its_escapes_are_decoded() -> None:
    stream = bench.escape_bomb(256)  # 131056 escapes declared (every latent), ESC chunk of a few bytes
    tracemalloc.start()
    try:
        for call in (api.decode_image, api.inspect):
            with pytest.raises(LimitError, match="bytes of escapes cannot code 131056 escapes"):
                call(stream)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20  # 131056 int64 escapes alone would be 1 MiB, with temporaries several


def test_the_encoder_never_writes_what_the_decoder_refuses() -> None:
    from dappled.models.field.layout import grids

    net = bench.crafted_net(PRESETS["low"], len(grids(8, 8)))
    with pytest.raises(EncodeError, match="escapes"):
        pack_payload(net, np.zeros(2, dtype=np.uint32), np.ones(5000, dtype=np.int64))


def test_the_largest_legitimate_field_decode_fits_the_budget() -> None:
    payload = unpack(bench.field_stream(PRESETS["medium"], 16)).frames()[0].payload
    b = payload_budget(payload, 4096, 4096)
    assert b.macs <= registry.DECODE_MAX_MACS and b.bytes <= registry.DECODE_MAX_BYTES
    assert b.bytes < 0.5e9  # latents (~270 MB of int64), output, one strip
    assert b.macs >= 1000 * 4096 * 4096  # medium: 1161 MAC/pixel


def test_a_field_decode_stays_within_its_budget_and_does_not_grow_with_the_image() -> None:
    """tracemalloc sees numpy's allocations: the peak of a real 1024x1024 decode is below the
    budget the header gave, and far below the old whole-array synthesis (~110 MB here)."""
    stream = bench.field_stream(PRESETS["medium"], 1024)
    api.decode_image(bench.field_stream(PRESETS["medium"], 16))  # compile the kernels first
    budget = api.inspect(stream).details["decode budget"]
    b = payload_budget(unpack(stream).frames()[0].payload, 1024, 1024)
    tracemalloc.start()
    try:
        image = api.decode_image(stream)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert image.shape == (1024, 1024, 3) and "within the limit" in budget
    latents = 8 * 2.0 * 1024 * 1024  # int64, about 2 per pixel: inherent
    assert peak <= b.bytes
    assert peak < latents + 3 * 1024 * 1024 + (16 << 20), peak  # latents + output + strips


def test_a_stream_over_the_memory_budget_is_refused_in_one_line(tmp_path: Path) -> None:
    from dappled.datasets import SAMPLE_IMAGE, load_image

    image = load_image(SAMPLE_IMAGE)[:32, :48]
    stream = _resized(api.encode_image(image, "rat"), 8192, 8192)
    with pytest.raises(LimitError, match=r"needs [\d.]+ GMAC / [\d.]+ GB, over the decoder's limit"):
        api.decode_image(stream)
    assert "over the limit" in api.inspect(stream).details["decode budget"]
    src = tmp_path / "big.dpl"
    src.write_bytes(stream)
    res = run_dappled("decode", str(src), "-o", str(tmp_path / "out.png"))
    one_line_error(res, "over the decoder's limit")
    assert not (tmp_path / "out.png").exists()


def test_each_frame_of_an_intra_video_stream_is_checked_too() -> None:
    """A rat video (intra: every frame by decode_image) of frames over the memory budget: refused
    by the frame's budget, before rat's own check of the latent count (which says otherwise)."""
    from dappled.codec.video import decode_video
    from dappled.datasets import SAMPLE_IMAGE, load_image

    c = unpack(api.encode_image(load_image(SAMPLE_IMAGE)[:32, :48], "rat"))
    h = c.header
    video = pack(StreamHeader(h.codec_id, 4096, 4096, 2, 25, 1, h.color_space),
                 [dataclasses.replace(c.frames()[0], frame=i) for i in range(2)])
    with pytest.raises(LimitError, match="GB, over the decoder's limit"):
        decode_video(video)
