"""The ``fieldv`` codec, the field codec's video form: the registry entry of the field video
encoder and decoder (spec in dappled/codec/field/video/format.py and docs/format.md)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from dappled.codec.chunks import require, unpack_chunks
from dappled.codec.container import Packet, PacketType, StreamHeader
from dappled.codec.defaults import DEFAULT_GOP
from dappled.codec.field.encoder import LAMBDAS
from dappled.codec.field.video.decoder import FieldVideoDecoder
from dappled.codec.field.video.encoder import FieldVideoEncoder
from dappled.codec.field.video.format import CODEC_ID, FRAME_I, FRAME_P_NET, parse_vhed
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

    def describe(self, header: StreamHeader, packets: list[Packet]) -> dict[str, Any]:
        """Frame types, where the bytes go (intra frames, motion, the first predicted frames'
        field payloads with the group's networks, later predicted frames' latents), the payload
        version(s) and the motion's bytes per predicted frame, for `dappled info`."""
        types, sizes = [], {"intra": 0, "motion": 0, "networks+latents": 0, "latents": 0}
        versions: set[int] = set()
        for p in packets:
            if p.type != PacketType.FRAME:
                continue
            chunks = unpack_chunks(p.payload)
            version, t, _ = parse_vhed(require(chunks, "VHED")[0])
            versions.add(version)
            types.append(t)
            if t == FRAME_I:
                sizes["intra"] += len(p.payload)
                continue
            sizes["motion"] += len(chunks.get("MOTN", b""))
            key = "networks+latents" if t == FRAME_P_NET else "latents"
            sizes[key] += len(p.payload) - len(chunks.get("MOTN", b""))
        n_i = sum(t == FRAME_I for t in types)
        n_pn = sum(t == FRAME_P_NET for t in types)
        n_p = len(types) - n_i
        out = {"frames": f"{n_i} intra, {n_p} predicted ({n_pn} with the group's networks)",
               "bytes": ", ".join(f"{k} {v}" for k, v in sizes.items()),
               "payload": "version " + ", ".join(str(v) for v in sorted(versions))}
        if n_p:
            out["motion"] = f"{sizes['motion'] / n_p:.1f} bytes per predicted frame"
        return out
