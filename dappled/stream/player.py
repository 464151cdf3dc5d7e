"""Real-time playback of a video stream: decode packets as they arrive, show frames on time.

Two threads. The decoder thread reads packets from the source (:class:`ContainerReader`, so a
pipe or a socket is fine) and decodes them into a small queue of frames; the presenter (the
caller's thread) shows each frame at its time on the stream's clock, on a :class:`Display`.

Timing rules:
- the clock starts when the first frame is shown (time to first frame = from :func:`play` being
  called, source opening included, to that moment);
- a frame that comes late because the decoder waited for the source (a slow pipe, a slow
  network) stalls playback: the clock waits for it (a *stall*), nothing is dropped;
- a frame that comes more than one frame period late because decoding could not keep up is
  *dropped*: decoded (later frames need it) but not shown, so playback stays in real time;
- pause stops the clock; a seek restarts it at the intra frame at or before the target.

A stream that breaks mid-way (truncated, corrupted) ends playback after the last good frame,
with the error in :attr:`PlayStats.error`.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from dappled.codec import registry
from dappled.codec.container import ContainerReader, PacketType
from dappled.codec.stream import StreamDecoder
from dappled.codec.video import VideoReader, make_decoder
from dappled.errors import BitstreamError, DappledError, InputError, OptionError
from dappled.stream.source import Source

QUEUE_FRAMES = 8  # decoded frames buffered ahead of the presenter
SEEK_SECONDS = 5.0  # what one arrow key press moves
POLL_SECONDS = 0.01  # how often the presenter looks at the window's events while it waits


class Display(Protocol):
    """Where frames go: a window, or nothing at all (headless)."""

    def show(self, index: int, frame: np.ndarray) -> None:
        """Put frame `index` on screen now."""

    def poll(self) -> list[str]:
        """User commands since the last call: "pause", "forward", "back", "quit"."""

    def close(self) -> None:
        """Release the window."""


class HeadlessDisplay:
    """Shows nothing; playback timing is kept exactly as with a window."""

    def show(self, index: int, frame: np.ndarray) -> None:
        """Nothing to draw."""

    def poll(self) -> list[str]:
        """No user, no commands."""
        return []

    def close(self) -> None:
        """Nothing to release."""


@dataclass
class PlayStats:
    """What happened during playback."""

    source: str
    width: int = 0
    height: int = 0
    frame_count: int = 0
    fps: float = 0.0
    shown: int = 0
    dropped: int = 0
    decoded: int = 0
    stalls: int = 0
    stall_seconds: float = 0.0
    first_frame_ms: float | None = None
    startup_ms: float = 0.0  # one-time decoder start-up (decoder.warm_up: JIT cache, weights)
    play_seconds: float = 0.0  # from the first frame shown to the last one (pauses excluded)
    seeks: int = 0
    last_frame: int | None = None  # index of the last good frame decoded
    error: str | None = None
    decoder: str = ""  # which decoder ran (the codec's, for the device picked)
    checksums: list[tuple[int, str]] = field(default_factory=list)

    @property
    def achieved_fps(self) -> float:
        """Frames shown per second of playback (the first frame starts the clock)."""
        return (self.shown - 1) / self.play_seconds if self.shown > 1 and self.play_seconds > 0 else 0.0

    def summary(self) -> str:
        """The one-line report `dappled play --headless` prints."""
        ttff = f"{self.first_frame_ms:.1f} ms" if self.first_frame_ms is not None else "none"
        return (f"{self.source}: shown {self.shown}, dropped {self.dropped}, decoded {self.decoded} of "
                f"{self.frame_count} frames ({self.width}x{self.height}); time to first frame {ttff} "
                f"(+ {self.startup_ms:.0f} ms decoder start-up); "
                f"rate {self.achieved_fps:.2f} fps (stream {self.fps:.3f} fps); stalls {self.stalls} "
                f"({self.stall_seconds:.2f} s)" + (f"; decoder {self.decoder}" if self.decoder else ""))


@dataclass
class _Frame:
    index: int
    image: np.ndarray
    read_wait: float  # seconds the decoder waited for the source's bytes of this frame


@dataclass
class _End:
    error: str | None = None


class _DecoderThread(threading.Thread):
    """Reads and decodes packets into a bounded queue until the stream ends or it is stopped."""

    def __init__(self, reader: ContainerReader, decoder: StreamDecoder,
                 out: queue.Queue[_Frame | _End]) -> None:
        super().__init__(daemon=True, name="dappled-decoder")
        self.reader = reader
        self.decoder = decoder
        self.out = out
        self.stop_flag = threading.Event()
        self.last_good: int | None = None

    def _put(self, item: _Frame | _End) -> bool:
        while not self.stop_flag.is_set():
            try:
                self.out.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        dec = self.decoder
        dec.reset()  # a new thread starts at a keyframe (the start, or after a seek)
        count = self.reader.header.frame_count
        wait = 0.0
        try:
            while not self.stop_flag.is_set():
                t0 = time.perf_counter()
                packet = self.reader.read_packet()
                wait += time.perf_counter() - t0
                if packet is None:
                    if self.last_good is None or self.last_good + 1 < count:
                        got = 0 if self.last_good is None else self.last_good + 1
                        self._put(_End(f"stream ends after frame {got} of {count}"))
                    else:
                        self._put(_End())
                    return
                if packet.type != PacketType.FRAME:
                    continue
                if self.last_good is not None and packet.frame != self.last_good + 1:
                    raise BitstreamError(f"frame {packet.frame} where frame {self.last_good + 1} "
                                         "was expected")
                img = dec.decode(packet)
                assert img is not None
                self.last_good = packet.frame
                if not self._put(_Frame(packet.frame, img, wait)):
                    return
                wait = 0.0
        except DappledError as exc:
            where = "before the first frame" if self.last_good is None else f"after frame {self.last_good}"
            self._put(_End(f"stream breaks {where}: {exc}"))
        except Exception as exc:  # never leave the presenter waiting on a dead thread
            self._put(_End(f"decoder failed: {type(exc).__name__}: {exc}"))

    def stop(self) -> None:
        """Ask the thread to finish and wait for it."""
        self.stop_flag.set()
        self.join()


class Player:
    """Plays one source on one display (see the module docstring for the timing rules)."""

    def __init__(self, source: Source, display_factory: Callable[[int, int, str], Display] | None = None,
                 device: str = "cpu", start: int = 0, checksums: bool = False,
                 on_event: Callable[[str], None] | None = None) -> None:
        self.source = source
        self.device = device
        self.start = start
        self.want_checksums = checksums
        self.on_event = on_event or (lambda _msg: None)
        self.display_factory = display_factory or (lambda _w, _h, _t: HeadlessDisplay())
        self._index: VideoReader | None = None

    def _open(self) -> ContainerReader:
        try:
            reader = ContainerReader(self.source.file, known_codecs=registry.ids(),
                                     size_hint=self.source.size)
        except BitstreamError as exc:
            raise type(exc)(f"{self.source.name}: {exc}") from None
        if reader.header.fps <= 0:  # an image stream: nothing to play on a clock
            raise BitstreamError(f"{self.source.name}: not a video stream "
                                 f"(a {registry.name_of(reader.header.codec_id)} image, no frame rate)")
        return reader

    def _keyframe(self, frame: int) -> tuple[int, int]:
        """(frame, offset) of the intra frame at or before `frame` (loads the index once)."""
        if not self.source.seekable:
            raise OptionError(f"{self.source.name}: cannot seek in a pipe")
        if self._index is None:
            try:
                self._index = VideoReader(self.source.file, self.device)  # type: ignore[arg-type]
            except BitstreamError as exc:
                raise type(exc)(f"{self.source.name}: {exc}") from None
        return self._index.keyframe_before(frame)

    def play(self) -> PlayStats:
        """Play to the end (or until quit); returns the figures."""
        reader = self._open()
        h = reader.header
        device, described = registry.by_id(h.codec_id).pick_decoder(self.device)
        self.device = device  # the index for seeking decodes nothing, but keeps it consistent
        try:
            decoder = make_decoder(h, device)
        except BitstreamError as exc:
            raise type(exc)(f"{self.source.name}: {exc}") from None
        t0 = time.perf_counter()
        decoder.warm_up()  # the codec's start-up (compiled code, weights) off the clock
        t_start = time.perf_counter()
        stats = PlayStats(self.source.name, h.width, h.height, h.frame_count, h.fps)
        stats.decoder = f"{described} on {device}"
        stats.startup_ms = (t_start - t0) * 1000.0
        if h.fps <= 0:
            raise BitstreamError(f"{self.source.name}: stream has no frame rate")
        period = 1.0 / h.fps
        if not 0 <= self.start < h.frame_count:
            raise OptionError(f"--start {self.start} outside 0..{h.frame_count - 1}")
        if self.start:
            _key, offset = self._keyframe(self.start)
            reader.seek(offset)
        display = self.display_factory(h.width, h.height, self.source.name)
        frames: queue.Queue[_Frame | _End] = queue.Queue(QUEUE_FRAMES)
        worker = _DecoderThread(reader, decoder, frames)
        worker.start()
        origin: float | None = None  # wall time at which frame `base` is due
        base = 0
        paused_at: float | None = None
        last_shown: int | None = None
        t_first = t_last = 0.0
        try:
            while True:
                cmd = self._commands(display)
                if "quit" in cmd:
                    break
                if "pause" in cmd:
                    if paused_at is None:
                        paused_at = time.perf_counter()
                        self.on_event("paused")
                    else:
                        if origin is not None:
                            origin += time.perf_counter() - paused_at
                        t_first += time.perf_counter() - paused_at
                        paused_at = None
                        self.on_event("resumed")
                if paused_at is not None:
                    time.sleep(POLL_SECONDS)
                    continue
                seek = [c for c in cmd if c in ("forward", "back")]
                if seek and self.source.seekable:
                    here = last_shown if last_shown is not None else 0
                    step = round(SEEK_SECONDS * h.fps) * (1 if seek[-1] == "forward" else -1)
                    target = min(max(here + step, 0), h.frame_count - 1)
                    key, offset = self._keyframe(target)
                    worker.stop()
                    frames = queue.Queue(QUEUE_FRAMES)
                    reader.seek(offset)
                    worker = _DecoderThread(reader, decoder, frames)
                    worker.start()
                    origin = None
                    stats.seeks += 1
                    self.on_event(f"seek to frame {key}")
                    continue
                try:
                    item = frames.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                if isinstance(item, _End):
                    stats.error = item.error
                    break
                stats.decoded += 1
                if self.want_checksums:
                    stats.checksums.append((item.index, hashlib.sha256(item.image.tobytes()).hexdigest()))
                now = time.perf_counter()
                if origin is None:  # first frame after start or seek: the clock starts here
                    origin, base = now, item.index
                    due = now
                else:
                    due = origin + (item.index - base) * period
                if now > due + period:
                    if item.read_wait > period:  # waited for the source: stall, do not drop
                        stats.stalls += 1
                        stats.stall_seconds += now - due
                        origin += now - due
                        due = now
                    else:
                        stats.dropped += 1
                        self.on_event(f"dropped {item.index}")
                        continue
                while (left := due - time.perf_counter()) > 0:
                    time.sleep(min(left, POLL_SECONDS))
                display.show(item.index, item.image)
                t_last = time.perf_counter()
                if stats.first_frame_ms is None:
                    stats.first_frame_ms = (t_last - t_start) * 1000.0
                    t_first = t_last
                stats.shown += 1
                last_shown = item.index
                self.on_event(f"shown {item.index}")
        finally:
            worker.stop()
            display.close()
        stats.last_frame = worker.last_good
        stats.play_seconds = t_last - t_first if stats.shown else 0.0
        return stats

    def _commands(self, display: Display) -> list[str]:
        cmd = display.poll()
        if any(c in ("forward", "back") for c in cmd) and not self.source.seekable:
            self.on_event("cannot seek: the source is a pipe")
        return cmd


def play(source: Source, *, headless: bool = True, device: str = "auto", start: int = 0,
         scale: int = 0, checksums: bool = False,
         on_event: Callable[[str], None] | None = None) -> PlayStats:
    """Play `source` in a window (pygame) or headless; returns the figures of the run."""
    if headless:
        factory = None
    else:
        from dappled.stream.window import WindowDisplay

        def factory(w: int, h: int, title: str) -> Display:
            return WindowDisplay(w, h, title, scale)

    if device not in ("auto", "cpu", "cuda"):
        raise InputError(f"unknown device {device!r}")
    return Player(source, factory, device, start, checksums, on_event).play()
