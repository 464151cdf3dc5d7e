"""Streaming playback: the `dappled play` player (window or headless) and the `dappled serve`
HTTP server with its browser player (static JavaScript in ``web/``, decoding and WebGL2
rendering on the viewer's side)."""
