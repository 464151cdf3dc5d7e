"""The ``fieldv`` codec, the field codec's video form: the registry entry of the field video
encoder and decoder (spec in dappled/codec/field/video/format.py and docs/format.md)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from dappled.codec.container import Packet, PacketType, StreamHeader
from dappled.codec.defaults import DEFAULT_GOP
from dappled.codec.field.encoder import LAMBDAS
from dappled.codec.field.video.decoder import FieldVideoDecoder
from dappled.codec.field.video.encoder import FieldVideoEncoder
from dappled.codec.field.video.format import (
    CODEC_ID,
    FRAME_I,
    FRAME_P_DCT,
    FRAME_P_NET,
    FRAME_P_SKIP,
    parse_frame,
)
from dappled.codec.registry import Codec, EncodeParams
from dappled.codec.stream import decode_last
from dappled.errors import OptionError


class FieldVideoCodec(Codec):
    """The field codec for video streams: intra field images, motion + residual fields between."""

    name = "fieldv"
    codec_id = CODEC_ID
    description = "field video: intra fields, block motion + residual fields (use --codec field on a video)"
    quality_range = (1, 8)
    default_quality = 4
    label = "field video (ours)"
    video_stream: ClassVar[bool] = True
    decoders: ClassVar[dict[str, str]] = {"cpu": "numba, integer ARM (CPU)", "cuda": "torch synthesis (CUDA)"}

    def test_encode_kwargs(self) -> dict[str, Any]:
        """A short fit."""
        return {"iterations": 8}

    def make_decoder(self, header: StreamHeader, device: str = "cpu") -> FieldVideoDecoder:
        """The predictive decoder (the previous frame and the group's networks carried along)."""
        return FieldVideoDecoder(header, device)

    def make_encoder(self, width: int, height: int, fps: float, params: EncodeParams, *,
                     kbps: float | None = None, gop: int = DEFAULT_GOP,
                     frames: int | None = None) -> FieldVideoEncoder:
        """The predictive encoder at `kbps` (per group of pictures) or at params' --quality
        (lambda as the image codec's)."""
        if params.bpp is not None:
            raise OptionError("--bpp is for images; give a video --quality")
        quality = self.resolve_quality(params)
        if quality not in LAMBDAS:
            raise OptionError(f"--quality must be in {min(LAMBDAS)}..{max(LAMBDAS)}")
        return FieldVideoEncoder(width, height, fps, params, quality, gop, kbps)

    def encode_image(self, image: np.ndarray, params: EncodeParams) -> list[Packet]:
        """One intra frame."""
        h, w = image.shape[:2]
        return [self.make_encoder(w, h, 1.0, params, gop=1).encode(image, 1)]

    def decode_image(self, header: StreamHeader, packets: list[Packet], device: str = "cpu") -> np.ndarray:
        """Decode the frames of a stream; the last one."""
        return decode_last(FieldVideoDecoder(header, device), packets)

    def stream_sizes(self, packets: list[Packet]) -> dict[str, int]:
        """Bytes per named part of the frames (the chunk names of payload versions 1-2)."""
        sizes: dict[str, int] = {}
        for p in packets:
            if p.type == PacketType.FRAME:
                for tag, data in parse_frame(p.payload).chunks.items():
                    sizes[tag] = sizes.get(tag, 0) + len(data)
        return sizes

    def describe(self, header: StreamHeader, packets: list[Packet]) -> dict[str, Any]:
        """Frame types, where the bytes go (intra frames, motion, the first predicted frames'
        field payloads with the group's networks, later predicted frames' latents, transform
        residuals, the frames' own headers), the payload version(s) and the motion's bytes per
        predicted frame, for `dappled info`."""
        types, sizes = [], {"intra": 0, "motion": 0, "networks+latents": 0, "latents": 0,
                            "transform residuals": 0, "filters": 0, "framing": 0}
        n_filt = 0
        versions: set[int] = set()
        for p in packets:
            if p.type != PacketType.FRAME:
                continue
            parts = parse_frame(p.payload)
            versions.add(parts.version)
            types.append(parts.ftype)
            if parts.ftype == FRAME_I:
                sizes["intra"] += len(p.payload)
                continue
            motion = len(parts.chunks.get("MOTN", b""))
            sizes["motion"] += motion
            rest = sum(len(v) for k, v in parts.chunks.items() if k != "MOTN")
            key = ("networks+latents" if parts.ftype == FRAME_P_NET else
                   "transform residuals" if parts.ftype == FRAME_P_DCT else "latents")
            sizes[key] += rest
            n_filt += parts.filter is not None
            sizes["filters"] += parts.filter_bytes
            sizes["framing"] += len(p.payload) - motion - rest - parts.filter_bytes
        n_i = sum(t == FRAME_I for t in types)
        n_pn = sum(t == FRAME_P_NET for t in types)
        n_skip = sum(t == FRAME_P_SKIP for t in types)
        n_dct = sum(t == FRAME_P_DCT for t in types)
        n_p = len(types) - n_i
        out = {"frames": f"{n_i} intra, {n_p} predicted ({n_pn} with the group's networks, "
                         f"{n_dct} with a transform residual, {n_skip} without a residual, "
                         f"{n_filt} with a prediction filter)",
               "bytes": ", ".join(f"{k} {v}" for k, v in sizes.items()),
               "payload": "version " + ", ".join(str(v) for v in sorted(versions))}
        if n_p:
            out["motion"] = f"{sizes['motion'] / n_p:.1f} bytes per predicted frame"
        return out
