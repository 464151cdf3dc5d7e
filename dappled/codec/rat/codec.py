"""The rat codec: a learned transform codec (mean-scale hyperprior, CompressAI rANS) with
region-adaptive transforms and a shallow-decoder option (payload spec: docs/models.md).

Frame payload = chunks:
    HEAD  version u8, model id u8, rate index u8 (quality - 1), decoder u8 (0 full, 1 shallow),
          grid cell u16 (pixels per side of the square regions of the region-adaptive transform)
    Z     rANS string of the hyper-latent (CompressAI EntropyBottleneck)
    Y     rANS string of the latent (CompressAI GaussianConditional, 64 scale tables)

Every tensor shape follows from the frame size in the container header (the image is padded to
a multiple of 64 by edge replication), so the payload carries no shape to trust. The regions
the decoder needs are the grid named by the cell size: no side information beyond 2 bytes.
Frames taller than one 1-Mpixel strip are synthesized (and analysed) in horizontal strips whose
height follows from the frame size alone (strip_rows; docs/format.md, "rat strips").
"""

from __future__ import annotations

import math
import struct
from typing import Any, ClassVar

import numpy as np

from dappled.codec.chunks import pack_chunks, require, unpack_chunks
from dappled.codec.container import KEYFRAME, Packet, PacketType, StreamHeader
from dappled.codec.registry import Budget, Codec, EncodeParams
from dappled.errors import BitstreamError, InputError, LimitError, OptionError, UnsupportedError

PAYLOAD_VERSION = 1
_HEAD = struct.Struct("<BBBBH")
DECODER_IDS = {"full": 0, "shallow": 1}
DEFAULT_CELL = 64
CELL_RANGE = (16, 4096)
# What a stream can justify: the entropy decoding and the synthesis grow with the latent count,
# so a few hundred bytes may not declare a 4096x4096 image (it took 40 s to refuse). Real
# streams, flat images at quality 1 included, carry 15-30 latent values per byte.
MAX_LATENTS_PER_BYTE = 1024
# Decoded latent symbols of a valid stream stay far below this; larger ones mean garbage.
MAX_SYMBOL = 1 << 16


def padded_size(height: int, width: int) -> tuple[int, int]:
    """The frame size rounded up to the model's total stride (64)."""
    from dappled.models.rat.model import STRIDE

    return -(-height // STRIDE) * STRIDE, -(-width // STRIDE) * STRIDE


def _model(model_id: int) -> Any:
    from dappled.models.rat.store import load_shipped

    try:
        return load_shipped(model_id)
    except FileNotFoundError as exc:
        raise OptionError(str(exc)) from None


_DEVICE_COPIES: dict[tuple[int, str], Any] = {}


def _synthesis_on(model_id: int, device: str) -> Any:
    """The model on ``device`` (cached), for running the synthesis on a GPU."""
    key = (model_id, device)
    if key not in _DEVICE_COPIES:
        import copy

        _DEVICE_COPIES[key] = copy.deepcopy(_model(model_id)).to(device).eval()
    return _DEVICE_COPIES[key]


def _padded_string(s: bytes, n_symbols: int) -> bytes:
    """The rANS string followed by zeros, so a corrupted stream cannot make CompressAI's decoder
    read past its buffer: each symbol renormalises with at most one 32-bit word, and escape
    (bypass) codes read at most ~16 bytes per byte of input."""
    return s + bytes(4 * n_symbols + 16 * len(s) + 64)


BUDGET_N = 64  # the transforms' channels in the shipped models (rat.pt, rat-noregion.pt)
BUDGET_MACS_FIRST = round(25 * BUDGET_N**2 * (1 / 64 + 1 / 16))
"""MACs per output pixel of the synthesis's first half (g_s1: 1/16 to 1/4 scale)."""
BUDGET_MACS_SECOND = round(25 * BUDGET_N**2 / 4 + 25 * 3 * BUDGET_N / 4)
"""... and of its second half (g_s2: 1/4 scale to the image)."""
BUDGET_MACS_PER_PIXEL = BUDGET_MACS_FIRST + BUDGET_MACS_SECOND
BUDGET_BYTES_PER_PIXEL = 3 * BUDGET_N + 8
"""Peak memory of the synthesis per pixel of its strip (of the frame, below one strip): three
float32 N-channel planes at half scale (a layer's input and output and a temporary) and the RGB
output. Measured: whole decodes of 1.0 and 3.1 Mpixel, 193 bytes per added pixel
(docs/results.md, "Cost-guided fuzzing")."""
BUDGET_FIXED_BYTES = 160 << 20
"""torch's working set on the first large synthesis of a process (the intercept of the whole
decodes' fit), which also covers the model and the float64 hyper-synthesis' strip (its im2col
buffers, ~50 bytes per pixel of its 1-Mpixel strip, before the synthesis starts). Decodes of
1 to 9.4 Mpixel, whole or in strips, peak 24 to 103 MB under the budget (docs/results.md, "Rat
decode in strips")."""
MAX_PIXELS = 9_437_184
"""Largest frame the rat codec encodes or decodes, in pixels of the padded frame (a multiple of 64
each way): 3072x3072 and 4096x2304 (9.4 Mpixel) are in. Its decode, in strips, peaks near 0.4
GB, its budget is at most 0.51 GB (DECODE_MAX_BYTES is 1.5 GB); what bounds it is the work
(about 35 kMAC a pixel: 330 GMAC, 25-35 s of one CPU core). Refused before anything is
allocated, in one line."""


STRIP_LATENTS = 1 << 12
"""Latent positions (16x16 pixels each) per strip of the synthesis, and of the encoder's analysis:
1 Mpixel. A frame whose padded height fits one strip (at most 4096 // (width / 16) latent rows)
is synthesized whole, as it always was; a taller one in strip_bounds(height / 16, that many)
strips (models/rat/model.synthesis_strips), whose pixels may differ from a whole synthesis' by
float rounding (a rare pixel by one level): the strip height is part of the decoder, derived
from the frame size alone, never from the machine."""
HYPER_STRIP_LATENTS = STRIP_LATENTS // 16
"""Hyper-latent positions (64x64 pixels each) per strip of the float64 hyper-synthesis (1 Mpixel);
its strips give exactly the whole's values (tests/test_rat_model.py), so the tables any stream
picks are the same."""


def strip_rows(height: int, width: int) -> tuple[int, int]:
    """(latent rows per strip of the synthesis and analysis, hyper-latent rows per strip of the
    hyper-synthesis) for a padded frame of ``height`` x ``width``: a count at least the frame's
    rows means one strip, the whole frame."""
    return max(1, STRIP_LATENTS // (width // 16)), max(1, HYPER_STRIP_LATENTS // (width // 64))


def strip_pixels(height: int, width: int) -> int:
    """Pixels of the tallest strip of the synthesis of a padded ``height`` x ``width`` frame, with
    the one latent row (16 pixel rows) of halo its second half computes (the frame itself when
    it is one strip)."""
    from dappled.models.rat.model import strip_bounds

    hy, wy = height // 16, width // 16
    rows = strip_rows(height, width)[0]
    if rows >= hy:
        return height * width
    tallest = max(r1 - r0 for r0, r1 in strip_bounds(hy, rows))
    return (tallest + 1) * wy * 256


def synthesis_macs(height: int, width: int) -> int:
    """The synthesis's MACs on a padded ``height`` x ``width`` frame as its strips compute it
    (RatModel.synthesis_strips, the full decoder, the heavier): one strip, the frame; several,
    each strip's first half over its rows and SYNTHESIS_HALO more each side, twice (the RAT's
    region centers are summed in a pass of their own), and its second half over its rows and the
    3 rows at 1/4 scale around them that it reads."""
    from dappled.models.rat.model import SYNTHESIS_HALO, strip_bounds

    hy, wy = height // 16, width // 16
    rows = strip_rows(height, width)[0]
    if rows >= hy:
        return BUDGET_MACS_PER_PIXEL * height * width
    first = second = 0.0  # latent rows (16 pixel rows each) through each half
    for r0, r1 in strip_bounds(hy, rows):
        first += 2 * (min(hy, r1 + SYNTHESIS_HALO) - max(0, r0 - SYNTHESIS_HALO))
        second += (min(4 * hy, 4 * r1 + 2) - max(0, 4 * r0 - 1)) / 4
    return math.ceil(256 * wy * (BUDGET_MACS_FIRST * first + BUDGET_MACS_SECOND * second))


def check_frame_size(width: int, height: int, error: type[Exception] = LimitError) -> None:
    """`error` (LimitError for a stream, InputError for an image) when a frame's padded size is
    over MAX_PIXELS."""
    ph, pw = padded_size(height, width)
    if ph * pw > MAX_PIXELS:
        raise error(f"a frame of {width}x{height} (padded to {pw}x{ph}) is over the rat codec's limit "
                    f"of {MAX_PIXELS} pixels")


class RatCodec(Codec):
    """Learned transform codec with region-adaptive transforms (see module doc)."""

    decoders: ClassVar[dict[str, str]] = {"cpu": "torch (CPU)", "cuda": "torch synthesis (CUDA)"}

    decode_max_macs = 660_000_000_000
    """Its synthesis is fixed: the work is set by the padded frame (at most MAX_PIXELS) and its
    strips (synthesis_macs): 328 GMAC for MAX_PIXELS in one strip, 455-465 GMAC at 3072x3072 and
    4096x2304, up to 652 GMAC for the widest frames (16384 wide: strips of 4 latent rows, each
    with 6 of halo); tests/test_decode_budget.py holds every legitimate shape under this. Memory
    is the limit."""

    def decode_budget(self, header: StreamHeader, packets: list[Packet]) -> Budget:
        """The synthesis (four 5x5 transposed convolutions of N channels from 1/16 scale) on the
        padded frame: its MACs as its strips compute them (synthesis_macs: halos and the
        centers' pass included); BUDGET_BYTES_PER_PIXEL per pixel of its
        tallest strip, torch's fixed working set, the RGB output, the latents and CompressAI's
        padded strings. A frame over MAX_PIXELS is refused by decode_image (its pixel cap)
        before anything is allocated."""
        ph, pw = padded_size(header.height, header.width)
        px = ph * pw
        latents = 96 * px // 256 + BUDGET_N * px // 4096
        coded = sum(len(p.payload) for p in packets)
        return Budget(synthesis_macs(ph, pw),
                      BUDGET_BYTES_PER_PIXEL * strip_pixels(ph, pw) + BUDGET_FIXED_BYTES
                      + 3 * header.height * header.width + 12 * latents + 17 * coded)

    name = "rat"
    codec_id = 2
    description = "learned hyperprior transform codec with region-adaptive transforms (CompressAI rANS)"
    quality_range: ClassVar[tuple[int, int]] = (1, 4)
    default_quality = 3
    comparisons: ClassVar[tuple[tuple[str, str], ...]] = (
        ("rat", "jpeg"),
        ("rat", "webp"),
        ("rat[model=noregion]", "rat"),
        ("rat[decoder=shallow]", "rat"),
    )

    def parse_options(self, options: dict[str, Any]) -> tuple[int, int, int]:
        """(model id, decoder id, grid cell) from -O model=rat|noregion, decoder=full|shallow, grid=N."""
        from dappled.models.rat.store import MODEL_NAMES

        opts = dict(options)
        model = str(opts.pop("model", "rat"))
        decoder = str(opts.pop("decoder", "full"))
        try:
            cell = int(opts.pop("grid", DEFAULT_CELL))
        except ValueError:
            raise OptionError("rat option grid wants an integer cell size in pixels") from None
        if opts:
            raise OptionError(f"unknown rat option(s): {', '.join(opts)} (known: model, decoder, grid)")
        if model not in MODEL_NAMES:
            raise OptionError(f"rat option model must be one of {', '.join(MODEL_NAMES)}, got {model!r}")
        if decoder not in DECODER_IDS:
            raise OptionError(f"rat option decoder must be full or shallow, got {decoder!r}")
        if not CELL_RANGE[0] <= cell <= CELL_RANGE[1] or cell % 16:
            raise OptionError(f"rat option grid must be a multiple of 16 in {CELL_RANGE[0]}..{CELL_RANGE[1]}")
        return MODEL_NAMES[model], DECODER_IDS[decoder], cell

    def encode_image(self, image: np.ndarray, params: EncodeParams) -> list[Packet]:
        """Analysis, hyperprior, rANS; one FRAME packet. The encoder runs on the CPU."""
        import torch
        import torch.nn.functional as F

        from dappled.models.rat.regions import grid_labels

        model_id, decoder_id, cell = self.parse_options(params.options)
        model = _model(model_id)
        if decoder_id == DECODER_IDS["shallow"] and model.shallow is None:
            raise OptionError("this rat model has no shallow decoder")
        quality = self.resolve_quality(params)
        h, w = image.shape[:2]
        check_frame_size(w, h, InputError)
        ph, pw = padded_size(h, w)
        rows, hyper_rows = strip_rows(ph, pw)
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8))
        if rows >= ph // 16:  # one strip: the whole image at once
            x = pixels.permute(2, 0, 1)[None].float() / 255.0
            x = F.pad(x, (0, pw - w, 0, ph - h), mode="replicate")
            labels = grid_labels(ph, pw, cell)[None]
            comp = model.compress(x, quality - 1, labels, hyper_rows)
        else:
            def image_rows(a: int, b: int) -> torch.Tensor:  # padded rows a:b, edges replicated
                x = pixels[torch.arange(a, b).clamp_(max=h - 1)].permute(2, 0, 1)[None].float() / 255.0
                return F.pad(x, (0, pw - w, 0, 0), mode="replicate")

            y = model.analysis_strips(image_rows, ph, pw, torch.tensor([quality - 1]), cell, rows)
            comp = model.compress(None, quality - 1, hyper_rows=hyper_rows, y=y)
        head = _HEAD.pack(PAYLOAD_VERSION, model_id, quality - 1, decoder_id, cell)
        payload = pack_chunks({"HEAD": head, "Z   ": comp.z_string, "Y   ": comp.y_string})
        return [Packet(PacketType.FRAME, payload, 0, KEYFRAME)]

    def decode_image(self, header: StreamHeader, packets: list[Packet], device: str = "cpu") -> np.ndarray:
        """rANS decode (CPU), synthesis (CPU or CUDA), crop, round to 8 bits."""
        import torch

        from dappled.models.rat.store import MODELS

        frames = [p for p in packets if p.type == PacketType.FRAME]
        if len(frames) != 1:
            raise BitstreamError("rat image stream needs exactly one frame packet")
        head, z_str, y_str = require(unpack_chunks(frames[0].payload), "HEAD", "Z   ", "Y   ")
        if len(head) != _HEAD.size:
            raise BitstreamError("rat header has the wrong size")
        version, model_id, rate, decoder_id, cell = _HEAD.unpack(head)
        if version != PAYLOAD_VERSION:
            raise UnsupportedError(f"unsupported rat payload version {version}")
        if model_id not in MODELS:
            raise UnsupportedError(f"unknown rat model id {model_id}")
        model = _model(model_id)
        if rate >= model.config.n_rates:
            raise BitstreamError(f"rat rate index {rate} out of range")
        if decoder_id not in DECODER_IDS.values():
            raise BitstreamError(f"unknown rat decoder id {decoder_id}")
        decoder = "shallow" if decoder_id == DECODER_IDS["shallow"] else "full"
        if decoder == "shallow" and model.shallow is None:
            raise UnsupportedError("stream asks for a shallow decoder this model does not have")
        if not CELL_RANGE[0] <= cell <= CELL_RANGE[1] or cell % 16:
            raise BitstreamError(f"rat grid cell {cell} out of range")
        h, w = header.height, header.width
        check_frame_size(w, h)
        ph, pw = padded_size(h, w)
        z_shape = (ph // 64, pw // 64)
        n_z = model.config.N * z_shape[0] * z_shape[1]
        n_y = model.config.M * (ph // 16) * (pw // 16)
        coded = len(z_str) + len(y_str)
        if n_y + n_z > MAX_LATENTS_PER_BYTE * (coded + 16):
            raise LimitError(f"rat stream codes {n_y + n_z} latent values for {w}x{h} in {coded} bytes "
                             f"(at most {MAX_LATENTS_PER_BYTE} per byte)")
        rows, hyper_rows = strip_rows(ph, pw)
        try:
            y_hat = model.decode_latent(_padded_string(y_str, n_y), _padded_string(z_str, n_z), z_shape,
                                        hyper_rows)
        except (ValueError, RuntimeError, IndexError, OverflowError, TypeError) as exc:
            raise BitstreamError(f"rat entropy decoding failed ({exc})") from None
        if not torch.isfinite(y_hat).all() or y_hat.abs().max() > MAX_SYMBOL:
            raise BitstreamError("rat latent out of range (corrupted stream)")
        net = model if device == "cpu" else _synthesis_on(model_id, device)
        out = np.empty((h, w, 3), np.uint8)
        with torch.no_grad():
            for top, x_hat in net.synthesis_strips(y_hat.to(device), torch.tensor([rate], device=device),
                                                   cell, decoder, rows):
                if top >= h:
                    break
                x_hat = torch.nan_to_num(x_hat[0, :, : h - top, :w], nan=0.0).clamp(0.0, 1.0)
                rgb = (x_hat * 255.0).round().to(torch.uint8).permute(1, 2, 0)
                out[top : top + rgb.shape[0]] = rgb.cpu().numpy()
        return out
