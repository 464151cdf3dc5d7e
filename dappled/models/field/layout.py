"""The shape of a field representation: which latent grids, their sizes and quantization steps,
the decoder architecture (presets), and the exact dyadic bilinear upsampling they share.

Everything here is plain numpy and integers, used alike by the torch fit, the integer decoder
and the stream parser, so the encoder and decoder cannot disagree on a size or a weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEVELS = 7  # grids at 1, 1/2, ..., 1/64 of the image size
LUMA_LEVELS = tuple(range(LEVELS))  # Y at every level
CHROMA_LEVELS = tuple(range(1, LEVELS))  # Cb, Cr from half resolution down
ACT_BITS = 12  # fixed-point fraction bits of the synthesis activations
ARM_BITS = 8  # fixed-point fraction bits of the ARM activations

# Causal neighbours (dy, dx) in raster order, nearest first; a preset uses the first `ctx`.
NEIGHBOURS = (
    (0, -1), (-1, 0), (-1, -1), (-1, 1), (0, -2), (-2, 0), (-1, -2), (-1, 2),
    (-2, -1), (-2, 1), (0, -3), (-3, 0), (-2, -2), (-2, 2), (-1, -3), (-1, 3),
)
MAX_CTX = len(NEIGHBOURS)
PAD = 3  # the farthest neighbour offset: grids are zero-padded by this much above/left/right

# BT.601 full range, centred: the synthesis starts as exactly this linear map.
YCBCR_TO_RGB = np.array([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]])
RGB_TO_YCBCR = np.linalg.inv(YCBCR_TO_RGB)


@dataclass(frozen=True)
class Arch:
    """Decoder size: ARM context and widths, synthesis widths. All sent in the stream."""

    ctx: int  # ARM context size (first `ctx` of NEIGHBOURS)
    arm_hidden: int  # ARM hidden width
    arm_layers: int  # ARM hidden layers (1 or 2)
    synth_hidden: int  # 1x1 synthesis hidden width (>= 6: the linear start needs 3 ReLU pairs)
    res_hidden: int  # channels inside the 3x3 residual block (0: no block)

    def check(self) -> None:
        """ValueError unless every size is in the range the stream format allows."""
        if not (1 <= self.ctx <= MAX_CTX and 1 <= self.arm_hidden <= 64 and self.arm_layers in (1, 2)
                and 6 <= self.synth_hidden <= 64 and 0 <= self.res_hidden <= 32):
            raise ValueError(f"field architecture out of range: {self}")

    def arm_macs(self) -> int:
        """Multiply-accumulates of the ARM per latent."""
        h = self.arm_hidden
        return self.ctx * h + (self.arm_layers - 1) * h * h + 2 * (h + self.ctx)


PRESETS: dict[str, Arch] = {
    "low": Arch(ctx=8, arm_hidden=8, arm_layers=1, synth_hidden=8, res_hidden=2),
    "medium": Arch(ctx=12, arm_hidden=12, arm_layers=2, synth_hidden=16, res_hidden=6),
    # a wider one-layer ARM with the medium synthesis: at high rates ~60 % of the medium preset's
    # gain inside the 100-ms decode budget (docs/results.md, session 13)
    "high": Arch(ctx=12, arm_hidden=12, arm_layers=1, synth_hidden=16, res_hidden=6),
}

AUTO = "auto"
"""The complexity that follows lambda (:func:`preset_for`): the image encoder's default."""
HIGH_RATE_LAMBDA = 0.0014
"""At or below this lambda (quality 7 up, ~0.45 bpp and more on Kodak) `auto` takes the high
preset. On whole Kodak images at the default effort it gained +0.28 dB at equal rate at quality
8 (23 of 24 images) and +0.3 dB at quality 7 (session 14); 384x256 crops at mid rates (lambda
0.002-0.008) lost with larger decoders (session 13), whose weights weigh 4x more there."""


def preset_for(complexity: str, lam: float) -> str:
    """The preset a complexity option names at a lambda: itself, or for `auto` the low preset
    above HIGH_RATE_LAMBDA and the high one at or below it."""
    if complexity != AUTO:
        return complexity
    return "high" if lam <= HIGH_RATE_LAMBDA else "low"


@dataclass(frozen=True)
class Grid:
    """One latent grid: colour channel (0 Y, 1 Cb, 2 Cr), level, size."""

    channel: int
    level: int
    height: int
    width: int

    @property
    def size(self) -> int:
        return self.height * self.width


def grids(height: int, width: int) -> list[Grid]:
    """The latent grids of an image, in stream order: Y levels 0..6, then Cb, then Cr."""
    out = []
    for channel, levels in ((0, LUMA_LEVELS), (1, CHROMA_LEVELS), (2, CHROMA_LEVELS)):
        for lv in levels:
            out.append(Grid(channel, lv, -(-height // (1 << lv)), -(-width // (1 << lv))))
    return out


STEP_SHIFTS = range(-3, 3)  # the stream's step shift e: every step times 2**e
STEP_LADDERS = (0, 1)  # the stream's ladder: how fast steps shrink with the level


def step(level: int, shift: int = 0, ladder: int = 0) -> float:
    """Quantization step of a level, a dyadic rational (so the decoder stays exact).

    Ladder 0: 1/8 at full size, 3/2**(l+4) below (halving per level): coarse levels get finer
    steps, as one of their latents spreads over 4**l pixels. Ladder 1 (low rates):
    3/16 * 2**-(l/2) with sqrt(1/2) taken as 3/4, shrinking ~sqrt(2) per level, so coarse
    latents cost fewer bits. Every step times 2**shift (e < 0: finer steps, for high rates).
    """
    if level == 0:
        base = 0.125
    elif ladder == 0:
        base = 3.0 / float(1 << (level + 4))
    else:
        base = 0.1875 / float(1 << (level // 2)) * (0.75 if level % 2 else 1.0)
    return base * 2.0**shift


def steps_for(lam: float) -> tuple[int, int]:
    """(shift, ladder) of an image fit at a lambda: ladder 1 at every rate, one step coarser from
    lambda 0.012 up, one finer below 0.0012, two finer below 0.00035. Measured in session 11 on
    384x256 Kodak crops at fixed lambdas (docs/results.md, "Coarser steps and softer rounding"):
    with the image fit's softer rounding (fit.IMAGE_TEMPERATURES) this gives +0.5 to +0.8 dB at
    equal rate over the earlier table (:func:`residual_steps_for`) at 300 and 1000 iterations,
    lambda 0.0005-0.02. The second finer step (session 14, the high preset, 600 iterations):
    +0.28 dB at equal rate at lambda 0.00025 (quality 9), level (-0.00) at 0.0005."""
    shift = -2 if lam < 0.00035 else -1 if lam < 0.0012 else 1 if lam >= 0.012 else 0
    return shift, 1


def residual_steps_for(lam: float) -> tuple[int, int]:
    """(shift, ladder) of a video residual fit: the image table of sessions 1-10, which the
    field video codec was tuned with (measured on 256x256 Kodak crops, 250-300 iterations: one
    step finer below lambda 0.0012, ladder 1 from 0.012 up). Not measured again on residuals."""
    return (-1 if lam < 0.0012 else 0), (1 if lam >= 0.012 else 0)


def latents_per_pixel(height: int, width: int) -> float:
    """Latent count over pixel count (about 2 for large images)."""
    return sum(g.size for g in grids(height, width)) / float(height * width)


def macs_per_pixel(arch: Arch, height: int, width: int) -> int:
    """Decoder multiply-accumulates per pixel: ARM, level mixing + 2x upsampling, synthesis."""
    gs = grids(height, width)
    arm = arch.arm_macs() * latents_per_pixel(height, width)
    s = arch.synth_hidden
    front = 0.0
    for lv in range(LEVELS):
        n = sum(1 for g in gs if g.level == lv)
        front += (n * s + (4 * s if lv < LEVELS - 1 else 0)) / 4.0**lv  # mix, then the 2x up into lv
    synth = s * 3 + 2 * 27 * arch.res_hidden
    return round(arm + front + synth)


MAX_MACS_PER_PIXEL = 1536
"""Most decoder MAC/pixel an architecture may need (:func:`arch_macs_per_pixel`): the largest
preset, "medium", needs 1161; the margin leaves room for a preset a little larger. A stream's
architecture over it is refused before anything is decoded (the format allows up to 12948)."""


def arch_macs_per_pixel(arch: Arch) -> int:
    """MAC/pixel of an architecture on a large image (4096x4096: about 2 latents per pixel), the
    figure :data:`MAX_MACS_PER_PIXEL` caps. Tiny images have more latents per pixel but few pixels."""
    return macs_per_pixel(arch, 4096, 4096)


def level_size(height: int, width: int, level: int) -> tuple[int, int]:
    """(rows, columns) of a grid at this level."""
    return -(-height // (1 << level)), -(-width // (1 << level))
