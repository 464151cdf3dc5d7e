"""The splat codec (id 1): an image as 2D Gaussians, fitted per image, quantized, entropy coded, and
decoded by rasterization (spec of the payload in docs/format.md; format, encoder and decoder in
this package). Its videos are coded by its video form, ``splatv`` (dappled.codec.splat.video)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from dappled.codec.container import KEYFRAME, Packet, PacketType, StreamHeader
from dappled.codec.defaults import DEFAULT_QUALITY
from dappled.codec.registry import Budget, Codec, EncodeParams
from dappled.codec.splat.decoder import MAX_COVERAGE, decode_frame, frame_budget
from dappled.codec.splat.encoder import PRESETS
from dappled.errors import BitstreamError
from dappled.limits import MAX_PIXELS


class SplatCodec(Codec):
    """2D Gaussian splatting image codec (GaussianImage-style rendering, Image-GS-style init)."""

    name = "splat"
    codec_id = 1
    description = "2D Gaussians fitted per image, rANS-coded, decoded by rasterization"
    quality_range = (1, 8)
    default_quality = DEFAULT_QUALITY
    supports_bpp = True
    video_form: ClassVar[str | None] = "splatv"
    decoders: ClassVar[dict[str, str]] = {"cpu": "numba rasterizer (CPU)", "cuda": "torch rasterizer (CUDA)"}

    def test_encode_kwargs(self) -> dict[str, Any]:
        """A short fit: enough for a real stream, a second or so at test sizes."""
        return {"iterations": 30}

    def target_bpp(self, params: EncodeParams) -> float:
        """The bpp this encode aims at (from --bpp or the quality preset)."""
        if params.bpp is not None:
            return float(params.bpp)
        return PRESETS[self.resolve_quality(params)]

    def encode_image(self, image: np.ndarray, params: EncodeParams) -> list[Packet]:
        """Fit, quantize, entropy code to the rate target; one FRAME packet."""
        from dappled.codec.splat.encoder import encode_splat

        return [Packet(PacketType.FRAME, encode_splat(image, params, self.target_bpp(params)), 0, KEYFRAME)]

    decode_max_macs = 10 * MAX_COVERAGE * MAX_PIXELS
    """The render's work is capped by coverage after parsing (decoder.check_render_work)."""

    def decode_budget(self, header: StreamHeader, packets: list[Packet]) -> Budget:
        """From the declared Gaussian count (checked against the payload size): the render of
        that many Gaussians (:func:`~dappled.codec.splat.decoder.frame_budget`: coverage at most
        MAX_COVERAGE, checked once the Gaussians are parsed, before rendering)."""
        from dappled.codec.chunks import require, unpack_chunks
        from dappled.codec.splat.format import _HEAD, check_count

        frames = [p for p in packets if p.type == PacketType.FRAME]
        if len(frames) != 1:
            raise BitstreamError(f"splat image stream needs exactly one frame packet, found {len(frames)}")
        head = require(unpack_chunks(frames[0].payload), "HEAD")[0]
        if len(head) < _HEAD.size:
            raise BitstreamError("splat header has the wrong size")
        n = _HEAD.unpack_from(head)[1]
        check_count(n, len(frames[0].payload), header.width, header.height)
        return frame_budget(n, header.width, header.height)

    def decode_image(self, header: StreamHeader, packets: list[Packet], device: str = "cpu") -> np.ndarray:
        """Entropy-decode and rasterize the one FRAME packet."""
        frames = [p for p in packets if p.type == PacketType.FRAME]
        if len(frames) != 1:
            raise BitstreamError("splat image stream needs exactly one frame packet")
        return decode_frame(frames[0].payload, header.width, header.height, device)
