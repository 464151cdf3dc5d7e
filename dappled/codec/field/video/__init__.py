"""The field codec's video form (``fieldv``): intra frames are field images, predicted frames a
block-motion prediction plus a residual field whose networks are shared by a group."""

from dappled.codec.field.video.codec import FieldVideoCodec

__all__ = ["FieldVideoCodec"]
