"""Dappled: content-adaptive neural image and video codecs with real-time decoders."""

__version__ = "0.1.0"
