"""Pillow plugin: ``import dappled.pillow`` and Pillow opens and saves Dappled streams (.dpl).

    import dappled.pillow  # registers the "DAPPLED" format and the .dpl extension
    from PIL import Image

    Image.open("photo.dpl").save("photo.png")          # any codec's image stream
    Image.open("photo.png").save("photo.dpl", codec="field", quality=4, effort="fast")

Opening reads and checks the 32-byte header only; the stream is read and decoded on ``load()``
(through :func:`dappled.codec.api.decode_image`). Video streams open on their first frame;
``n_frames`` and ``seek()`` reach the others (decoded in order from the start). Saving takes
``codec`` (default: the API's default codec), ``quality`` or ``bpp``, ``seed`` and any codec
option as keyword arguments (``effort="fast"``, ``iterations=8`` ...).

Errors are Pillow's: bytes that are not a Dappled stream are not identified
(``UnidentifiedImageError``); a broken header raises ``OSError`` from ``Image.open``, a broken
payload ``OSError`` from ``load()``; a bad save option ``ValueError``, a failed encode
``OSError``. Pillow truncates an existing file before a save handler runs, so use
:func:`save` to replace a file atomically.
"""

from __future__ import annotations

import os
from typing import IO, Any

import numpy as np
from PIL import Image, ImageFile

from dappled.codec import api, registry
from dappled.codec.container import HEADER_SIZE, MAGIC, StreamHeader, decode_header
from dappled.errors import DappledError, OptionError
from dappled.fileio import atomic_open

FORMAT = "DAPPLED"
EXTENSION = ".dpl"
MIME = "image/x-dappled"

def _accept(prefix: bytes) -> bool:
    return prefix[:4] == MAGIC


class DappledImageFile(ImageFile.ImageFile):
    """A Dappled stream as a Pillow image: RGB, decoded lazily, one frame per video frame."""

    format = FORMAT
    format_description = "Dappled neural image/video stream"

    def _open(self) -> None:
        assert self.fp is not None
        self._start = self.fp.tell()
        try:
            header = decode_header(self.fp.read(HEADER_SIZE), registry.ids())
        except DappledError as exc:
            raise OSError(f"{self._name()}: broken Dappled stream: {exc}") from exc
        self._header: StreamHeader = header
        self._size = (header.width, header.height)
        self._mode = "RGB"
        self.n_frames = header.frame_count
        self.is_animated = header.frame_count > 1
        self.info["codec"] = registry.name_of(header.codec_id)
        if header.frame_count > 1 and header.fps > 0:
            self.info["duration"] = 1000.0 / header.fps
        self._data: bytes | None = None
        self._frame = 0
        self._loaded_frame = -1
        self._decoder: Any = None
        self._next = (0, 0)  # (packet index, frame index) the decoder reaches next
        self.tile = []

    def _name(self) -> str:
        return str(self.filename) if self.filename else "Dappled stream"

    def _read(self) -> bytes:
        """The whole stream, read once, never past the bytes its header allows."""
        if self._data is None:
            assert self.fp is not None
            cap = api.stream_byte_cap(self._header)
            self.fp.seek(self._start)
            data = self.fp.read(cap + 1)
            if len(data) > cap:
                raise OSError(f"{self._name()}: stream longer than the {cap} bytes its header allows")
            self._data = data
            if self._exclusive_fp:  # Pillow's own plugins close a file they opened once loaded
                self.fp.close()
                self.fp = None
        return self._data

    def _decode(self, frame: int) -> np.ndarray:
        data = self._read()
        if self._header.frame_count == 1:
            return api.decode_image(data)
        if self._decoder is None or frame < self._next[1]:  # (re)start at the first frame
            self._container = api.parse(data)
            self._decoder = registry.by_id(self._header.codec_id).make_decoder(self._container.header)
            self._next = (0, 0)
        packets = self._container.packets
        i, f = self._next
        while i < len(packets):
            p = packets[i]
            i += 1
            img = self._decoder.decode(p)
            if img is not None:
                f += 1
                if f - 1 == frame:
                    self._next = (i, f)
                    return img
        raise OSError(f"{self._name()}: stream ends before frame {frame}")

    def seek(self, frame: int) -> None:
        """Go to video frame `frame` (decoded on the next load)."""
        if not self._seek_check(frame):
            return
        self._frame = frame

    def tell(self) -> int:
        """The current frame."""
        return self._frame

    def load(self) -> Any:
        """Decode the current frame (once); a broken stream raises OSError."""
        if self._loaded_frame != self._frame:
            try:
                pixels = self._decode(self._frame)
            except DappledError as exc:
                raise OSError(f"{self._name()}: broken Dappled stream: {exc}") from exc
            self.im = Image.fromarray(pixels).im
            self._loaded_frame = self._frame
        return super().load()


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    """Encode `im` (converted to RGB) with the codec and options of ``im.encoderinfo``."""
    info = dict(im.encoderinfo)
    codec = str(info.pop("codec", api.DEFAULT_CODEC))
    quality, bpp, seed = info.pop("quality", None), info.pop("bpp", None), int(info.pop("seed", 0))
    if im.mode != "RGB":
        try:
            im = im.convert("RGB")
        except ValueError as exc:
            raise OSError(f"cannot write mode {im.mode} as {FORMAT}") from exc
    pixels = np.asarray(im, dtype=np.uint8)
    try:
        data = api.encode_image(pixels, codec, quality=None if quality is None else int(quality),
                                bpp=None if bpp is None else float(bpp), seed=seed, progress=False, **info)
    except OptionError as exc:
        raise ValueError(str(exc)) from exc
    except DappledError as exc:
        raise OSError(f"cannot encode {FORMAT}: {exc}") from exc
    fp.write(data)


def save(image: Image.Image, path: str | os.PathLike[str], **params: Any) -> None:
    """Save `image` as a Dappled stream at `path` atomically (`params` as for ``image.save``):
    a failed encode leaves `path` as it was."""
    with atomic_open(path) as f:
        image.save(f, format=FORMAT, **params)


Image.register_open(FORMAT, DappledImageFile, _accept)
Image.register_save(FORMAT, _save)
Image.register_extension(FORMAT, EXTENSION)
Image.register_mime(FORMAT, MIME)
