"""The tokens codec family: a variable-length 1D image tokenizer whose leading tokens carry the
most information (:mod:`~dappled.codec.tokens.codec`; the model is in dappled/models/tokens/).
Its decoder is a learned detokenizer, so it runs torch."""
