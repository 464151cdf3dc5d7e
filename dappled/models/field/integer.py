"""The field codec's integer side: the quantized network the stream carries, and the mapping of
its ARM to the entropy layer's latent codec (:mod:`dappled.entropy.latent`), which predicts and
codes the latents in portable fixed point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dappled.entropy.latent import (
    FRAC_BITS,
    LATENTS_PER_BIT,
    MAX_SHIFT,
    MAX_WEIGHT,
    QMAX,
    CodedLatents,
    IntegerARM,
    IntegerLayer,
    LatentCodec,
)
from dappled.entropy.latent import PAD as _LATENT_PAD
from dappled.models.field.layout import ARM_BITS, NEIGHBOURS, PAD, Arch, Grid

WMAX = MAX_WEIGHT  # |integer weight| bound (every network tensor)
KMAX = MAX_SHIFT  # weight steps are 2**-k, 0 <= k <= KMAX
if (ARM_BITS, PAD) != (FRAC_BITS, _LATENT_PAD):  # the format ties them: docs/format.md
    raise ImportError("field layout and latent codec disagree on fixed point or padding")

__all__ = [  # LATENTS_PER_BIT, QMAX and CodedLatents: the latent codec's, for the field codec
    "KMAX", "LATENTS_PER_BIT", "QMAX", "WMAX", "CodedLatents", "QuantNet", "QuantTensor",
    "arm_layer_count", "context_model", "decode_latents", "encode_latents", "latent_codec",
    "tensor_shapes", "unzigzag", "zigzag",
]


@dataclass
class QuantTensor:
    """One network tensor as integers: value = ints * 2**-k."""

    ints: np.ndarray  # int64, the tensor's shape
    k: int

    def values(self) -> np.ndarray:
        """The float64 values (exact)."""
        return np.ldexp(self.ints.astype(np.float64), -self.k)


@dataclass
class QuantNet:
    """The network the stream carries: ARM layers (weight and bias share k) and synthesis."""

    arch: Arch
    arm: list[QuantTensor]  # w1, b1, [w2, b2], wo, bo (one row per grid)
    synth: list[QuantTensor]  # wa, ba, wb, bb, ka, kba, kb, kbb
    step_shift: int = 0  # latent steps times 2**step_shift
    step_ladder: int = 0  # which ladder of level steps (layout.step)

    def tensors(self) -> list[QuantTensor]:
        return [*self.arm, *self.synth]


def tensor_shapes(arch: Arch, n_grids: int) -> list[tuple[int, ...]]:
    """Shapes of all network tensors, in stream order (ARM then synthesis)."""
    h, c = arch.arm_hidden, arch.ctx
    shapes: list[tuple[int, ...]] = [(h, c), (h,)]
    if arch.arm_layers == 2:
        shapes += [(h, h), (h,)]
    shapes += [(2, h + c), (n_grids, 2)]  # the output bias is per grid
    sh, rh = arch.synth_hidden, arch.res_hidden
    shapes += [(sh, n_grids), (sh,), (3, sh), (3,), (rh, 3, 3, 3), (rh,), (3, rh, 3, 3), (3,)]
    return shapes


def arm_layer_count(arch: Arch) -> int:
    """Number of ARM tensors (weights and biases)."""
    return 2 * (arch.arm_layers + 1)


def zigzag(v: np.ndarray) -> np.ndarray:
    """Signed -> non-negative integers (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...)."""
    v = np.asarray(v, dtype=np.int64)
    return np.where(v >= 0, 2 * v, -2 * v - 1)


def unzigzag(u: np.ndarray) -> np.ndarray:
    """Inverse of :func:`zigzag`."""
    u = np.asarray(u, dtype=np.int64)
    return np.where(u % 2 == 0, u // 2, -(u + 1) // 2)


# ---------------------------------------------------------------- the ARM as the latent codec's model


def context_model(net: QuantNet, n_grids: int) -> IntegerARM:
    """The network's ARM as the entropy layer's integer context model (``n_grids`` output bias
    rows, checked)."""
    a = net.arch
    layers = [IntegerLayer(w.ints, b.ints, w.k) for w, b in zip(net.arm[0::2], net.arm[1::2], strict=True)]
    model = IntegerARM(np.array(NEIGHBOURS[: a.ctx], dtype=np.int64), tuple(layers[:-1]), layers[-1])
    if model.n_grids != n_grids:
        raise ValueError(f"the ARM has {model.n_grids} output rows for {n_grids} grids")
    return model


def latent_codec(net: QuantNet, gs: Sequence[Grid]) -> LatentCodec:
    """The latent codec of these grids under the network's ARM."""
    return LatentCodec(context_model(net, len(gs)), name="field latents")


def encode_latents(latents: list[np.ndarray], gs: list[Grid], net: QuantNet) -> CodedLatents:
    """Code integer latents (|q| <= QMAX) under the integer ARM."""
    if [q.shape for q in latents] != [(g.height, g.width) for g in gs]:
        raise ValueError("latent shapes do not match the grids")
    return latent_codec(net, gs).encode(latents)


def decode_latents(words: np.ndarray, excess: np.ndarray, gs: list[Grid], net: QuantNet) -> list[np.ndarray]:
    """Inverse of :func:`encode_latents`; BitstreamError where the stream is inconsistent."""
    return latent_codec(net, gs).decode(words, excess, [(g.height, g.width) for g in gs])
