"""Entropy coding layer: CompressAI's rANS, wrapped safely, under categorical models carried in
the stream (:func:`encode_symbols`) or discretized Laplace / Gaussian models with given scales
and means (:func:`encode_laplace`, :func:`encode_gaussian`)."""

from dappled.entropy.categorical import (
    CategoricalInfo,
    categorical_info,
    categorical_model_bytes,
    decode_symbols,
    encode_symbols,
)
from dappled.entropy.parametric import (
    build_model_table,
    decode_gaussian,
    decode_laplace,
    encode_gaussian,
    encode_laplace,
    model_table,
    scale_indexes,
    scale_table,
)

__all__ = [
    "CategoricalInfo",
    "build_model_table",
    "categorical_info",
    "categorical_model_bytes",
    "decode_gaussian",
    "decode_laplace",
    "decode_symbols",
    "encode_gaussian",
    "encode_laplace",
    "encode_symbols",
    "model_table",
    "scale_indexes",
    "scale_table",
]
