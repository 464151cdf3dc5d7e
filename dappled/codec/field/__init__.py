"""The field codec family: a tiny neural field fitted per image (Cool-chic / C3 family).

Modules: :mod:`~dappled.codec.field.format` (the payload's chunks, packed, parsed and checked),
:mod:`~dappled.codec.field.decoder` (ARM in numba, exact-arithmetic synthesis: never torch on
the CPU), :mod:`~dappled.codec.field.encoder` (the fit and its rate loop, torch),
:mod:`~dappled.codec.field.codec` (the registry entry).
"""
