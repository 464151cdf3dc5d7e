"""The field codec (id 5): a tiny neural field fitted per image: integer latent grids rANS-coded
under an integer autoregressive model, that model's weights and a small synthesis network
(format, encoder and decoder in this package; spec in docs/format.md)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from dappled.codec import registry
from dappled.codec.container import KEYFRAME, Packet, PacketType, StreamHeader
from dappled.codec.field.decoder import decode_payload, payload_budget
from dappled.codec.field.encoder import LAMBDAS, encode_field
from dappled.codec.field.format import read_head
from dappled.codec.progress import FitProgress
from dappled.codec.registry import Budget, Codec, EncodeParams
from dappled.errors import BitstreamError
from dappled.models.field.integer import arm_layer_count, tensor_shapes
from dappled.models.field.layout import grids, macs_per_pixel


class FieldCodec(Codec):
    """Per-image fitted neural field: latent grids + integer ARM + tiny synthesis."""

    name = "field"
    codec_id = 5
    description = "a tiny neural field fitted per image (latent grids, autoregressive entropy model)"
    quality_range = (1, 10)
    default_quality = 4
    supports_bpp = True
    video_form = "fieldv"
    decoders: ClassVar[dict[str, str]] = {"cpu": "numba, integer ARM (CPU)", "cuda": "torch synthesis (CUDA)"}

    def video_rates(self, width: int, height: int, fps: float) -> list[float]:
        """The rates a video sweep codes (its video form's)."""
        return registry.get(self.video_form).video_rates(width, height, fps)

    def test_encode_kwargs(self) -> dict[str, Any]:
        """A real fit, cut to a few iterations."""
        return {"iterations": 8}

    def rd_points(self, n: int) -> list[dict[str, Any]]:
        """Quality presets spread over 2..9 (lambda halves per step: ~0.06 to ~1.1 bpp on Kodak
        at the default effort; 1 and 10 lie outside what the baselines are compared at)."""
        return super().rd_points(n) if n > 8 else [
            {"quality": q} for q in sorted({round(2 + 7 * i / max(1, n - 1)) for i in range(n)})]

    def encode_image(self, image: np.ndarray, params: EncodeParams) -> list[Packet]:
        """Fit and code one image; one FRAME packet."""
        lam = None if params.bpp is not None else LAMBDAS[self.resolve_quality(params)]
        with FitProgress(params.progress) as bar:
            enc = encode_field(image, params, lam=lam, target_bpp=params.bpp, progress=bar.update)
        return [Packet(PacketType.FRAME, enc.payload, 0, KEYFRAME)]

    def decode_image(self, header: StreamHeader, packets: list[Packet], device: str = "cpu") -> np.ndarray:
        """Decode the one FRAME packet."""
        frames = [p for p in packets if p.type == PacketType.FRAME]
        if len(frames) != 1:
            raise BitstreamError(f"field image stream needs exactly one frame packet, found {len(frames)}")
        return decode_payload(frames[0].payload, header.width, header.height, device)

    @staticmethod
    def _frame(packets: list[Packet]) -> Packet:
        frames = [p for p in packets if p.type == PacketType.FRAME]
        if len(frames) != 1:
            raise BitstreamError(f"field image stream needs exactly one frame packet, found {len(frames)}")
        return frames[0]

    def decode_budget(self, header: StreamHeader, packets: list[Packet]) -> Budget:
        """From the frame's header: the architecture's MAC/pixel, the latents, one strip."""
        return payload_budget(self._frame(packets).payload, header.width, header.height)

    def describe(self, header: StreamHeader, packets: list[Packet]) -> dict[str, Any]:
        """Grid sizes, MAC/pixel and architecture, for `dappled info`: from the payload's header
        alone (nothing decoded, so nothing allocated beyond the stream's size)."""
        head = read_head(self._frame(packets).payload)
        gs = grids(header.height, header.width)
        a = head.arch
        shapes = tensor_shapes(a, len(gs))
        if head.version == 1:  # one ARM output bias row for every grid
            shapes[arm_layer_count(a) - 1] = (2,)
        n_weights = sum(math.prod(s) for s in shapes)
        return {
            "decoder": (f"ARM {a.ctx} context, {a.arm_layers}x{a.arm_hidden} hidden; synthesis "
                        f"{len(gs)}->{a.synth_hidden}->3, 3x3 residual {a.res_hidden}; {n_weights} weights"),
            "MAC/px": macs_per_pixel(a, header.height, header.width),
            "grids": " ".join(f"{'YUV'[g.channel]}{g.level}:{g.width}x{g.height}" for g in gs),
            "latents": f"{sum(g.size for g in gs)} ({head.n_esc} escaped)",
        }
