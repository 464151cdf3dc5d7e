"""The classical baselines: image codecs through Pillow and PyAV stored in a Dappled container
(:mod:`~dappled.codec.classical.image`), and the PyAV video codecs `dappled eval --video`
compares against (:mod:`~dappled.codec.classical.video`)."""
