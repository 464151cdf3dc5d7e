"""The tokens codec's model: a 1D tokenizer with FSQ tokens and tail-token drop (see model.py)."""

from dappled.models.tokens.model import FSQ, Tokenizer, TokenizerConfig

__all__ = ["FSQ", "Tokenizer", "TokenizerConfig"]
