"""Latent coding: integer grids coded in raster order under a causal integer context model
(:class:`IntegerARM`) that predicts a discretized Laplace (mu, ln b) per latent in fixed point,
through the numba rANS coder, with escapes for latents outside the tables.

>>> codec = LatentCodec(model)            # model: IntegerARM (weights, shifts, neighbours)
>>> bits = codec.estimated_bits(grids)    # the encoder's rate
>>> coded = codec.encode(grids)           # CodedLatents(words, excess)
>>> grids = codec.decode(coded.words, coded.excess, [g.shape for g in grids])

Modules: ``tables`` (the Laplace tables and the escape floor), ``grids`` (the padded buffer),
``arm`` (the integer context model), ``codec`` (encode / decode / estimated bits).
"""

from dappled.entropy.latent.arm import (
    ACT_CLAMP,
    MAX_CONTEXT,
    MAX_SHIFT,
    MAX_WEIGHT,
    MAX_WIDTH,
    IntegerARM,
    IntegerLayer,
)
from dappled.entropy.latent.codec import QMAX, CodedLatents, LatentCodec, Predictions
from dappled.entropy.latent.grids import PAD, layout_of, pack_grids, unpack_grids
from dappled.entropy.latent.tables import ESCAPE_FREQ, FRAC_BITS, LATENTS_PER_BIT, tables

__all__ = [
    "ACT_CLAMP",
    "ESCAPE_FREQ",
    "FRAC_BITS",
    "LATENTS_PER_BIT",
    "MAX_CONTEXT",
    "MAX_SHIFT",
    "MAX_WEIGHT",
    "MAX_WIDTH",
    "PAD",
    "QMAX",
    "CodedLatents",
    "IntegerARM",
    "IntegerLayer",
    "LatentCodec",
    "Predictions",
    "layout_of",
    "pack_grids",
    "tables",
    "unpack_grids",
]
