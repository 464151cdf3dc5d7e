"""Where a player reads a stream from: a file, standard input, or an HTTP(S) URL.

Every source is a binary file object that `ContainerReader` reads as bytes arrive. Files and
URLs are also seekable (a URL through HTTP range requests, one request per seek), so the player
can jump to an intra frame; standard input is not.
"""

from __future__ import annotations

import io
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import BinaryIO

from dappled.errors import InputError

HTTP_TIMEOUT = 30.0  # seconds a read may wait for the server before the player gives up
_CHUNK = 64 * 1024


class HTTPRangeFile(io.RawIOBase):
    """A read-only, seekable file over HTTP: reads stream the response body; a seek closes it and
    the next read opens a new request with ``Range: bytes=N-``."""

    def __init__(self, url: str, timeout: float = HTTP_TIMEOUT) -> None:
        super().__init__()
        self.url = url
        self.timeout = timeout
        self._pos = 0
        self._resp: io.BufferedIOBase | None = None
        self.size: int | None = None
        self._open(0)

    def _open(self, offset: int) -> None:
        req = urllib.request.Request(self.url, headers={"Range": f"bytes={offset}-"} if offset else {})
        try:
            resp = urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416:  # at or past the end: an empty body
                self._resp, self._pos = None, offset
                return
            raise InputError(f"{self.url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise InputError(f"{self.url}: cannot connect ({reason})") from None
        if offset and resp.status != 206:
            resp.close()
            raise InputError(f"{self.url}: the server ignores range requests (cannot seek)")
        if self.size is None:
            rng = resp.headers.get("Content-Range", "")
            length = resp.headers.get("Content-Length")
            if "/" in rng and rng.rsplit("/", 1)[1].isdigit():
                self.size = int(rng.rsplit("/", 1)[1])
            elif length is not None and length.isdigit() and not offset:
                self.size = int(length)
        self._resp, self._pos = resp, offset

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            if self.size is None:
                raise OSError(f"{self.url}: size unknown, cannot seek from the end")
            offset += self.size
        if offset < 0:
            raise OSError("negative seek position")
        if offset != self._pos or self._resp is None:
            if self._resp is not None:
                self._resp.close()
            self._resp = None
            self._pos = offset
        return self._pos

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._resp is None:
            if self.size is not None and self._pos >= self.size:
                return 0
            self._open(self._pos)
            if self._resp is None:
                return 0
        try:  # read1: what has arrived (at most one socket read), not a full buffer's worth
            data = self._resp.read1(len(b))  # type: ignore[union-attr]
        except (TimeoutError, OSError) as exc:
            raise InputError(f"{self.url}: read failed ({exc})") from None
        n = len(data)
        b[:n] = data
        self._pos += n
        return n

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None
        super().close()


class PipeFile(io.RawIOBase):
    """A pipe (standard input) whose reads give up after `timeout` seconds without data, as an
    HTTP read does: a stalled writer ends playback with an error instead of a hang."""

    def __init__(self, fd: int, name: str = "<stdin>", timeout: float = HTTP_TIMEOUT) -> None:
        super().__init__()
        self.fd = fd
        self.name = name
        self.timeout = timeout

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        import select

        ready, _, _ = select.select([self.fd], [], [], self.timeout)
        if not ready:
            raise InputError(f"{self.name}: no data for {self.timeout:g} s (the writer stalled)")
        data = os.read(self.fd, len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:  # the descriptor belongs to the process, not to us
        super().close()


@dataclass
class Source:
    """An opened stream source: a binary file object, its size when known, and whether it seeks."""

    name: str
    file: BinaryIO
    size: int | None
    seekable: bool

    def close(self) -> None:
        """Close the underlying file (not standard input)."""
        if self.file is not sys.stdin.buffer:
            self.file.close()  # a PipeFile leaves standard input open


def is_url(spec: str) -> bool:
    """True for http:// and https:// sources."""
    return spec.startswith(("http://", "https://"))


def open_source(spec: str, timeout: float = HTTP_TIMEOUT) -> Source:
    """Open SOURCE: a path, ``-`` for standard input, or an http(s) URL (InputError if it cannot).
    `timeout`: seconds a read from standard input or a server may wait for data."""
    if spec == "-":
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, OSError, ValueError):  # no real descriptor (embedded, tests)
            return Source("<stdin>", sys.stdin.buffer, None, False)
        return Source("<stdin>", io.BufferedReader(PipeFile(fd, "<stdin>", timeout), _CHUNK),  # type: ignore[arg-type]
                      None, False)
    if is_url(spec):
        f = HTTPRangeFile(spec, timeout)
        return Source(spec, io.BufferedReader(f, _CHUNK), f.size, True)  # type: ignore[arg-type]
    if "://" in spec:
        raise InputError(f"{spec}: only files, '-' and http(s) URLs can be played")
    try:
        f = open(spec, "rb")
    except IsADirectoryError:
        raise InputError(f"{spec}: is a directory") from None
    except OSError as exc:
        raise InputError(f"{spec}: cannot read ({exc.strerror})") from None
    return Source(spec, f, os.fstat(f.fileno()).st_size, True)
