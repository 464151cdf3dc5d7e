"""The splat codec family: an image as 2D Gaussians fitted per image (``splat``), and its video
form (``splatv``, :mod:`dappled.codec.splat.video`).

Modules: :mod:`~dappled.codec.splat.format` (the payload's chunks, parsed and checked),
:mod:`~dappled.codec.splat.decoder` (rasterization: numpy and numba on the CPU, never torch),
:mod:`~dappled.codec.splat.encoder` (fit and rate control, torch), :mod:`~dappled.codec.splat.codec`
(the registry entry).
"""
