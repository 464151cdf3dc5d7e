"""Streaming playback: `dappled play` (headless and in an SDL window), `dappled serve`, and the
browser player in a real headless Chromium. Real parts throughout: a real encoded clip, real
pipes, a real HTTP server on a loopback port, a real browser with software WebGL2.

A 10-frame 64x48 synthetic clip (intra frames at 0, 4 and 8) is encoded once per module.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from _browser import chromium, served
from _cli import dappled_cmd, one_line_error, run_dappled
from _clips import FAST, moving_pattern

from dappled.codec.container import HEADER_SIZE, ContainerReader, PacketType
from dappled.codec.video import decode_video, encode_video
from dappled.eval.metrics import psnr

N_FRAMES = 10
GOP = 4


def _clip(n: int = N_FRAMES) -> list[np.ndarray]:
    return moving_pattern(n, dx=3)


@pytest.fixture(scope="module")
def stream_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the clip's stream, a truncated copy, and things that must not be served."""
    root = tmp_path_factory.mktemp("serve")
    data = encode_video(_clip(), Fraction(25), kbps=200, gop=GOP, **FAST).data
    (root / "clip.dpl").write_bytes(data)
    packets = _packet_ends(data)
    (root / "cut.dpl").write_bytes(data[: packets[5] + 40])  # inside frame 6's packet
    (root / "notes.txt").write_text("not a stream")
    (root / "sub").mkdir()
    (root / "sub" / "two.dpl").write_bytes(data)
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.dpl").write_bytes(data)
    (root / "link.dpl").symlink_to(outside / "secret.dpl")
    return root


@pytest.fixture(scope="module")
def data(stream_dir: Path) -> bytes:
    return (stream_dir / "clip.dpl").read_bytes()


@pytest.fixture(scope="module")
def offline(data: bytes) -> list[np.ndarray]:
    return decode_video(data)


def _packet_ends(data: bytes) -> list[int]:
    """Byte offset where each FRAME packet ends, in frame order."""
    reader = ContainerReader(io.BytesIO(data))
    ends = []
    for p in reader:
        if p.type == PacketType.FRAME:
            ends.append(reader.offset)
    return ends


def _sha(img: np.ndarray) -> str:
    return hashlib.sha256(img.tobytes()).hexdigest()


def _checksums(path: Path) -> dict[int, str]:
    out = {}
    for line in path.read_text().splitlines():
        i, h = line.split()
        out[int(i)] = h
    return out


def _summary(stdout: str) -> dict[str, int]:
    m = re.search(r"shown (\d+), dropped (\d+), decoded (\d+) of (\d+)", stdout)
    assert m, stdout
    return dict(zip(("shown", "dropped", "decoded", "count"), map(int, m.groups()), strict=True))


# ---------------------------------------------------------------- container seek


def test_container_reader_seek_goes_to_a_packet(data: bytes) -> None:
    ends = _packet_ends(data)
    reader = ContainerReader(io.BytesIO(data), size_hint=len(data))
    assert reader.offset == HEADER_SIZE
    reader.seek(ends[3])  # the packet of frame 4 (an intra frame) starts where frame 3's ends
    p = reader.read_packet()
    assert p is not None and p.frame == 4 and p.keyframe
    assert reader.offset == ends[4]
    list(reader)
    assert reader.read_packet() is None
    reader.seek(ends[7])  # clears the end-of-stream state
    p = reader.read_packet()
    assert p is not None and p.frame == 8
    from dappled.errors import BitstreamError

    with pytest.raises(BitstreamError):
        reader.seek(len(data) + 1)


# ---------------------------------------------------------------- dappled play


def test_play_through_a_slow_pipe_starts_early_and_matches_the_offline_decoder(
        data: bytes, offline: list[np.ndarray], tmp_path: Path) -> None:
    sums = tmp_path / "sums.txt"
    proc = subprocess.Popen([*dappled_cmd(), "play", "--headless", "-v", "--checksums", str(sums), "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=False)
    assert proc.stdin is not None and proc.stdout is not None
    first_part = _packet_ends(data)[1]  # header, CONFIG and the first two frames only
    proc.stdin.write(data[:first_part])
    proc.stdin.flush()
    lines: list[str] = []
    shown_first = threading.Event()

    def read_stdout() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.append(raw.decode())
            if raw.startswith(b"shown 0"):
                shown_first.set()

    reader = threading.Thread(target=read_stdout)
    reader.start()
    # the rest of the stream is held back until the player has shown frame 0
    assert shown_first.wait(120), "no frame shown while the stream was incomplete: " + "".join(lines)
    for k in range(first_part, len(data), 97):  # then trickle: the player must stall, not fail
        proc.stdin.write(data[k : k + 97])
        proc.stdin.flush()
        time.sleep(0.03)
    proc.stdin.close()
    assert proc.wait(120) == 0, proc.stderr.read() if proc.stderr else ""
    reader.join()
    out = "".join(lines)
    s = _summary(out)
    assert s["decoded"] == s["count"] == N_FRAMES and s["shown"] + s["dropped"] == N_FRAMES
    got = _checksums(sums)
    assert got == {i: _sha(f) for i, f in enumerate(offline)}  # bit for bit, every frame


def test_play_file_from_a_later_frame_seeks_to_the_intra_frame(stream_dir: Path, offline, tmp_path) -> None:
    sums = tmp_path / "sums.txt"
    res = run_dappled("play", "--headless", "--start", "6", "--checksums", str(sums),
                      str(stream_dir / "clip.dpl"))
    assert res.returncode == 0, res.stderr
    assert "time to first frame" in res.stdout and "rate" in res.stdout
    got = _checksums(sums)
    assert sorted(got) == [4, 5, 6, 7, 8, 9]  # from the intra frame at or before 6
    assert all(got[i] == _sha(offline[i]) for i in got)


def test_play_in_a_window_with_sdl_dummy_driver(stream_dir: Path) -> None:
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    res = run_dappled("play", str(stream_dir / "clip.dpl"), env=env)
    assert res.returncode == 0, res.stderr
    assert _summary(res.stdout)["decoded"] == N_FRAMES


def test_window_keys_pause_seek_and_quit(stream_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real SDL events (dummy video driver) through the window's key handling."""
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    import pygame

    from dappled.stream.player import Player
    from dappled.stream.source import open_source
    from dappled.stream.window import WindowDisplay

    shown: list[int] = []
    events: list[str] = []

    class Scripted(WindowDisplay):
        def show(self, index: int, frame: np.ndarray) -> None:
            super().show(index, frame)
            shown.append(index)
            key = {0: pygame.K_SPACE, 1: pygame.K_RIGHT, 2: pygame.K_LEFT, 4: pygame.K_q}.get(len(shown) - 1)
            if key is not None:
                pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode="", scancode=0))
            if len(shown) == 1:  # resume after a moment of pause
                threading.Timer(0.3, lambda: pygame.event.post(pygame.event.Event(
                    pygame.KEYDOWN, key=pygame.K_SPACE, mod=0, unicode="", scancode=0))).start()

    src = open_source(str(stream_dir / "clip.dpl"))
    try:
        stats = Player(src, lambda w, h, t: Scripted(w, h, t), on_event=events.append).play()
    finally:
        src.close()
    assert "paused" in events and "resumed" in events
    assert "seek to frame 8" in events  # 5 s forward from frame 1 clamps to the last intra frame
    assert "seek to frame 0" in events  # and 5 s back from frame 8 to the first
    assert shown == [0, 1, 8, 0, 1] and stats.seeks == 2  # q quits after the fifth frame
    assert stats.error is None


def test_play_truncated_stream_stops_after_the_last_good_frame(stream_dir: Path, offline, tmp_path) -> None:
    cut = stream_dir / "cut.dpl"
    for source, stdin in ((str(cut), None), ("-", cut.read_bytes())):
        sums = tmp_path / "sums.txt"
        res = run_dappled("play", "--headless", "--checksums", str(sums), source, stdin=stdin, text=False)
        one_line_error(res, "after frame 5")
        s = _summary(res.stdout.decode())
        assert s["decoded"] == 6  # frames 0..5 arrived whole; frame 6 was cut
        assert not sums.exists()  # a failed playback writes no checksum file (issue 10)
    from dappled.stream.player import play
    from dappled.stream.source import open_source

    src = open_source(str(cut))
    try:
        stats = play(src, headless=True, checksums=True)
    finally:
        src.close()
    assert stats.error and dict(stats.checksums) == {i: _sha(offline[i]) for i in range(6)}


def test_play_bad_inputs_are_one_line_errors(stream_dir: Path, tmp_path: Path) -> None:
    one_line_error(run_dappled("play", "--headless", str(tmp_path / "missing.dpl")), "missing.dpl")
    one_line_error(run_dappled("play", "--headless", str(stream_dir / "notes.txt")), "notes.txt",
                   "not a Dappled")
    one_line_error(run_dappled("play", "--headless", str(stream_dir)), "directory")
    one_line_error(run_dappled("play", "--headless", "ftp://example.org/a.dpl"), "ftp://")
    one_line_error(run_dappled("play", "--headless", "http://127.0.0.1:9/a.dpl"), "127.0.0.1:9")
    one_line_error(run_dappled("play", "--headless", "--start", "99", str(stream_dir / "clip.dpl")),
                   "--start", code=2)
    res = run_dappled("play", "--headless", "--start", "3", "-", stdin=(stream_dir / "clip.dpl").read_bytes(),
                      text=False)
    one_line_error(res, "cannot seek in a pipe", code=2)
    # an image stream is not a video
    from dappled.codec.api import encode_image

    img = tmp_path / "still.dpl"
    img.write_bytes(encode_image(_clip(1)[0], "jpeg", quality=50))
    one_line_error(run_dappled("play", "--headless", str(img)), "still.dpl", "not a video stream")


# ---------------------------------------------------------------- dappled serve


@pytest.fixture(scope="module")
def server(stream_dir: Path) -> Iterator[str]:
    with served(stream_dir) as url:
        yield url


def _get(base: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", path, headers=headers or {})  # the path goes out as is (no normalising)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def test_serve_lists_streams_and_the_player_page(server: str, data: bytes) -> None:
    status, _, body = _get(server, "/")
    page = body.decode()
    assert status == 200 and "clip.dpl" in page and "sub/two.dpl" in page and "cut.dpl" in page
    assert "notes.txt" not in page and "secret" not in page and "link.dpl" not in page
    status, _, body = _get(server, "/api/streams")
    listed = {e["name"]: e for e in json.loads(body)}
    assert listed["clip.dpl"]["bytes"] == len(data) and listed["clip.dpl"]["url"] == "/files/clip.dpl"
    status, _, body = _get(server, "/player?src=/files/clip.dpl")
    assert status == 200 and b"player.js" in body
    for name in ("player.js", "dpl.js", "gl.js"):
        status, headers, body = _get(server, f"/web/{name}")
        assert status == 200 and "javascript" in headers["content-type"] and len(body) > 1000


def test_serve_range_requests(server: str, data: bytes) -> None:
    status, headers, body = _get(server, "/files/clip.dpl")
    assert status == 200 and body == data and headers.get("accept-ranges") == "bytes"
    status, headers, body = _get(server, "/files/clip.dpl", {"Range": "bytes=32-47"})
    assert status == 206 and body == data[32:48]
    assert headers["content-range"] == f"bytes 32-47/{len(data)}"
    status, _, body = _get(server, "/files/clip.dpl", {"Range": f"bytes={len(data) - 20}-"})
    assert status == 206 and body == data[-20:]
    status, _, body = _get(server, "/files/clip.dpl", {"Range": "bytes=-16"})
    assert status == 206 and body == data[-16:]
    status, _, _ = _get(server, "/files/clip.dpl", {"Range": f"bytes={len(data) + 10}-"})
    assert status == 416


def test_serve_refuses_paths_outside_the_folder(server: str) -> None:
    for path in ("/files/../outside/secret.dpl", "/files/%2e%2e/%2e%2e/etc/passwd",
                 "/files/..%2f..%2fpyproject.toml", "/files/link.dpl", "/files//etc/hosts",
                 "/files/notes.txt", "/files/sub/../../clip.dpl", "/files/.hidden.dpl",
                 "/web/../server.py", "/web/%2e%2e%2fserver.py", "/files/nothere.dpl"):
        status, _, body = _get(server, path)
        assert status in (400, 403, 404), (path, status)
        assert b"DPLD" not in body and b"root:" not in body, path
    assert _get(server, "/files/sub/two.dpl")[0] == 200


def test_play_over_http_with_seek(server: str, offline, tmp_path: Path) -> None:
    sums = tmp_path / "sums.txt"
    res = run_dappled("play", "--headless", "--start", "9", "--checksums", str(sums),
                      f"{server}/files/clip.dpl")
    assert res.returncode == 0, res.stderr
    got = _checksums(sums)
    assert sorted(got) == [8, 9] and all(got[i] == _sha(offline[i]) for i in got)
    res = run_dappled("play", "--headless", f"{server}/files/cut.dpl")
    one_line_error(res, "after frame 5")
    one_line_error(run_dappled("play", "--headless", f"{server}/files/nothere.dpl"), "404")


# ---------------------------------------------------------------- the browser player





@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _open_player(browser, server: str, name: str):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server}/player?src=/files/{name}")
    page.wait_for_function("window.dappled && (window.dappled.state.ended || window.dappled.state.error)",
                           timeout=120_000)
    return page, errors


@pytest.mark.slow
def test_browser_player_plays_and_matches_the_python_decoder(browser, server: str, offline) -> None:
    page, errors = _open_player(browser, server, "clip.dpl")
    st = page.evaluate("window.dappled.state")
    assert not errors and st["error"] is None, (errors, st)
    assert st["ended"] and st["frameCount"] == N_FRAMES and st["decoded"] >= N_FRAMES
    assert st["shown"] + st["dropped"] == N_FRAMES and st["shown"] > 0
    assert re.fullmatch(r"frame 10 / 10", page.inner_text("#counter"))
    assert re.fullmatch(r"\d+\.\d fps", page.inner_text("#fps"))
    for k in (6, 0, 9):  # a predicted frame first: decoded from the intra frame at 4
        rgb = base64.b64decode(page.evaluate(f"window.dappled.captureFrame({k})"))
        img = np.frombuffer(rgb, np.uint8).reshape(offline[k].shape)
        assert psnr(offline[k], img) >= 35.0, k
    # the seek bar goes to the intra frame at or before its position; play runs on from there
    before = st["shown"] + st["dropped"]
    page.evaluate("""() => { const s = document.getElementById('seek'); s.value = '7';
                             s.dispatchEvent(new Event('input')); }""")
    page.click("#play")
    page.wait_for_function("window.dappled.state.ended", timeout=60_000)
    st = page.evaluate("window.dappled.state")
    assert st["frame"] == 9 and st["shown"] + st["dropped"] - before == 6  # frames 4..9
    assert page.inner_text("#counter") == "frame 10 / 10" and st["error"] is None
    page.close()


@pytest.mark.slow
def test_browser_player_stops_a_truncated_stream_after_the_last_good_frame(browser, server: str) -> None:
    page, errors = _open_player(browser, server, "cut.dpl")
    page.wait_for_function("window.dappled.state.ended", timeout=60_000)
    st = page.evaluate("window.dappled.state")
    assert not errors
    assert st["error"] and "after frame 5" in st["error"]
    assert st["frame"] == 5 and st["decoded"] == 6
    assert "after frame 5" in page.inner_text("#message")
    page.close()


@pytest.mark.slow
def test_browser_entropy_decoder_is_bit_exact(browser, server: str) -> None:
    """The JavaScript categorical/rANS and Exp-Golomb decoders against the Python encoders, on
    symbol sets that take every path: escape slot, negative values, one value, none."""
    from dappled.entropy import encode_symbols
    from dappled.entropy.golomb import encode_nonneg

    rng = np.random.default_rng(7)
    cases = {
        "laplace": np.rint(rng.laplace(0, 3, 3000)).astype(np.int64),
        "wide": rng.integers(-(1 << 20), 1 << 20, 6000),  # > 4096 distinct: escape slot
        "skewed": np.concatenate([np.zeros(5000, np.int64), rng.integers(0, 1 << 30, 50)]),
        "const": np.full(17, -5, np.int64),
        "empty": np.zeros(0, np.int64),
        "tiny": np.array([3, 1], np.int64),
    }
    page = browser.new_page()
    page.goto(f"{server}/player")
    for name, sym in cases.items():
        coded = base64.b64encode(encode_symbols(sym)).decode()
        got = page.evaluate("""async ([b64, n]) => {
            const m = await import('/web/dpl.js');
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            return Array.from(m.decodeSymbols(bytes, n));
        }""", [coded, len(sym)])
        assert np.array_equal(np.array(got, np.int64), sym), name
    gaps = rng.geometric(0.01, 2000).astype(np.int64)
    coded = base64.b64encode(encode_nonneg(gaps)).decode()
    got = page.evaluate("""async ([b64, n]) => {
        const m = await import('/web/dpl.js');
        return Array.from(m.decodeNonneg(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)), n));
    }""", [coded, len(gaps)])
    assert np.array_equal(np.array(got, np.int64), gaps)
    # a corrupted stream throws BitstreamError rather than returning garbage silently
    bad = bytearray(encode_symbols(cases["laplace"]))
    bad.append(0)
    msg = page.evaluate("""async (b64) => {
        const m = await import('/web/dpl.js');
        try { m.decodeSymbols(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)), 3000); return 'ok'; }
        catch (e) { return e.name + ': ' + e.message; }
    }""", base64.b64encode(bytes(bad)).decode())
    assert msg.startswith("BitstreamError"), msg
    page.close()



# ---------------------------------------------------------------- the decoder's fast path


def test_fast_dequantize_and_uint8_are_bit_identical_to_the_torch_path() -> None:
    from dappled.models.splat.numba_cpu import to_uint8
    from dappled.models.splat.quantize import QuantConfig, QuantizedGaussians, dequantize, dequantize_numpy

    rng = np.random.default_rng(3)
    n = 5000
    for cfg in (QuantConfig().canonical(), QuantConfig(3, 0.07, 11, 1 / 50, 1.5).canonical()):
        lo, hi = int(np.floor(-4 / cfg.log_scale_step)), int(np.ceil(7 / cfg.log_scale_step))
        q = QuantizedGaussians(rng.integers(0, 640 << cfg.pos_frac_bits, n), rng.integers(0, 272 << 3, n),
                               rng.integers(lo, hi + 1, n), rng.integers(lo, hi + 1, n),
                               rng.integers(-cfg.rho_levels + 1, cfg.rho_levels, n),
                               rng.integers(-(1 << 20), 1 << 20, (n, 3)))
        ref = [t.numpy() for t in dequantize(q, cfg)]
        fast = dequantize_numpy(q, cfg)
        for a, b in zip(ref, fast, strict=True):
            assert a.dtype == b.dtype == np.float32 and np.array_equal(a, b)
    img = rng.uniform(-0.2, 1.2, (37, 41, 3)).astype(np.float32)
    img.flat[:256] = (np.arange(256) + 0.5) / np.float32(255)  # halfway cases
    assert np.array_equal(to_uint8(img), np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8))
