"""Neural model families used by the dappled codecs."""
