"""The ``splatv`` codec (id 4), splat's video form: the registry entry of the splat video encoder
and decoder (spec in docs/format.md). A still image is one intra frame."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from dappled.codec.container import HEADER_SIZE, PACKET_HEADER_SIZE, Packet, PacketType, StreamHeader
from dappled.codec.defaults import DEFAULT_GOP, DEFAULT_QUALITY, image_payload_budget
from dappled.codec.registry import Budget, Codec, EncodeParams
from dappled.codec.splat.codec import SplatCodec
from dappled.codec.splat.decoder import frame_budget
from dappled.codec.splat.encoder import MIN_PAYLOAD_BYTES, PRESETS
from dappled.codec.splat.video.decoder import SplatVideoDecoder
from dappled.codec.splat.video.encoder import VIDEO_PRESETS, SplatVideoEncoder, VideoEncodeOptions
from dappled.codec.splat.video.format import (
    _CONFIG,
    CODEC_ID,
    MAX_GOP,
    VIDEO_GAUSSIAN_BYTES,
    frame_gaussians,
)
from dappled.codec.stream import decode_last
from dappled.errors import OptionError


class SplatVideoCodec(Codec):
    """The splat codec for video streams (frame_count > 1); a still image is one intra frame."""

    name = "splatv"
    codec_id = CODEC_ID
    description = "splat video: intra fits + predicted Gaussian updates (use --codec splat on a video)"
    quality_range = (1, 8)
    default_quality = DEFAULT_QUALITY
    supports_bpp = True
    label = "splat video (ours)"
    video_stream: ClassVar[bool] = True
    decoders: ClassVar[dict[str, str]] = {"cpu": "numba rasterizer (CPU)", "cuda": "torch rasterizer (CUDA)"}

    def test_encode_kwargs(self) -> dict[str, Any]:
        """A short intra fit (see Codec.test_encode_kwargs)."""
        return {"i_iterations": 30}

    def make_decoder(self, header: StreamHeader, device: str = "cpu") -> SplatVideoDecoder:
        """The predictive decoder (one state carried from frame to frame)."""
        return SplatVideoDecoder(header, device)

    def make_encoder(self, width: int, height: int, fps: float, params: EncodeParams, *,
                     kbps: float | None = None, gop: int = DEFAULT_GOP,
                     frames: int | None = None) -> SplatVideoEncoder:
        """The predictive encoder at `kbps` (or the --quality preset's rate, VIDEO_PRESETS). With
        `frames` known, the container's fixed cost (header, CONFIG, INDEX, END) comes out of the
        rate, so the whole file meets it."""
        if kbps is not None and params.quality is not None:
            raise OptionError("give either --kbps or --quality, not both")
        if params.bpp is not None:
            raise OptionError("--bpp is for images; give a video --kbps or --quality")
        if kbps is None:
            quality = self.resolve_quality(params)
            if quality not in VIDEO_PRESETS:
                lo, hi = min(VIDEO_PRESETS), max(VIDEO_PRESETS)
                raise OptionError(f"--quality for video must be in {lo}..{hi}")
            kbps = VIDEO_PRESETS[quality] * width * height * fps / 1000.0
        if not (math.isfinite(kbps) and kbps > 0):
            raise OptionError(f"--kbps must be a positive number, got {kbps}")
        if not 1 <= gop <= MAX_GOP:
            raise OptionError(f"--gop must be in 1..{MAX_GOP}, got {gop}")
        effective = kbps
        if frames:
            fixed = HEADER_SIZE + 3 * PACKET_HEADER_SIZE + _CONFIG.size + 12 * ((frames + gop - 1) // gop) + 4
            effective = max(kbps - fixed * 8 / 1000 * fps / frames, kbps * 0.5)
        opts = VideoEncodeOptions.from_options({**params.options, "seed": params.seed})
        enc = SplatVideoEncoder(width, height, fps, effective, gop, opts, params.device)
        enc.config_kbps = kbps
        return enc

    def encode_image(self, image: np.ndarray, params: EncodeParams) -> list[Packet]:
        """One intra frame at the image splat codec's bpp target."""
        h, w = image.shape[:2]
        bpp = params.bpp if params.bpp is not None else PRESETS[self.resolve_quality(params)]
        # the FRAME packet header counts in the encoder's budget; tiny images get a floor (splat.encoder)
        nbytes = max(image_payload_budget(bpp, w, h), MIN_PAYLOAD_BYTES + 16) + PACKET_HEADER_SIZE
        enc = SplatVideoEncoder(w, h, 1.0, nbytes * 8 / 1000, 1,
                                VideoEncodeOptions.from_options(dict(params.options)), params.device)
        return [enc.encode(image, 1)]

    decode_max_macs = SplatCodec.decode_max_macs
    """Per frame, as the image codec's (:meth:`decode_budget`)."""

    def decode_budget(self, header: StreamHeader, packets: list[Packet]) -> Budget:
        """Frames x Gaussians x coverage: the sum over the frame packets of rendering the most
        Gaussians each can leave in the state (:func:`frame_gaussians`, from chunk headers), at
        most MAX_COVERAGE per pixel (:func:`frame_budget`); memory is the costliest frame's.
        The decoder checks each frame's share before decoding it (SplatVideoDecoder.decode),
        so a stream declaring huge counts is refused before anything is allocated for them."""
        frames = [frame_budget(frame_gaussians(p.payload, header.width, header.height),
                               header.width, header.height, VIDEO_GAUSSIAN_BYTES)
                  for p in packets if p.type == PacketType.FRAME]
        return Budget(sum(b.macs for b in frames), max((b.bytes for b in frames), default=0))

    def decode_image(self, header: StreamHeader, packets: list[Packet], device: str = "cpu") -> np.ndarray:
        """Decode the one frame of a single-frame stream."""
        return decode_last(SplatVideoDecoder(header, device), packets)
