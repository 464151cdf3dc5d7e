"""Container format, codec registry and the image/video codecs behind one interface."""
