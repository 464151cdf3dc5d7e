"""Splat's video form, the ``splatv`` codec (id 4): intra frames fitted as images, predicted frames
coded as quantized updates of the decoder's previous Gaussians.

Modules: :mod:`~dappled.codec.splat.video.format` (frame header, motion and CONFIG payloads),
:mod:`~dappled.codec.splat.video.decoder` (the state machine and renderer, never torch),
:mod:`~dappled.codec.splat.video.encoder` (fits and rate control, torch),
:mod:`~dappled.codec.splat.video.codec` (the registry entry).
"""
