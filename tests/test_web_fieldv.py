"""Field video in the browser (dappled/stream/web/fieldv.js, decoded in a Web Worker by
fieldv-worker.js), in a real headless Chromium served by a real `dappled serve`: the player shows
every frame of a field video stream exactly as the Python decoder makes it (tolerance 0 on every
channel: the motion compensation is integer arithmetic and the residual synthesis exact float64,
as in Python), for the frozen conformance streams (payload versions 1 to 6), a clip with
transform residuals (version 6) at an odd size, a two-group clip
encoded here (version 3; seeking restarts from an intra frame), a still one (version 3: frames of
one byte, no motion and no residual), a stream whose motion was rewritten to many fractional
vectors (cubic interpolation) and one mixing frames without a residual between those with one;
the integer motion compensation (bilinear and cubic) equals Python's on random motion fields, and
the version 4 prediction filter on random coefficients;
byte flips in a predicted frame, and in its
entropy-coded motion alone, are refused by both decoders or decoded to the same pixels (the same
vectors); a corrupted or cut stream is an error on the page, never a hang. The opt-in WebGL2
synthesis (float32) is within +-1 per frame of the group.
"""

from __future__ import annotations

import base64
import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _browser import chromium, same_outcome, served
from _clips import moving_pattern

from dappled.codec import registry
from dappled.codec.chunks import pack_chunks, unpack_chunks
from dappled.codec.container import Packet, pack, unpack
from dappled.codec.motion import Motion, compensate
from dappled.codec.video import decode_video, encode_video
from dappled.errors import BitstreamError

ROOT = Path(__file__).resolve().parents[1]
CONFORMANCE = ROOT / "tests" / "conformance"
CODEC_ID = 6  # the field video codec (checked against the registry below)


def _clip(n: int, w: int = 48, h: int = 32) -> list[np.ndarray]:
    """A textured picture panning right and down (so the motion is not zero)."""
    from scipy.ndimage import uniform_filter

    rng = np.random.default_rng(3)
    big = uniform_filter(rng.random((h + 4 * n + 8, w + 4 * n + 8, 3)) * 255, (5, 5, 1)).astype(np.uint8)
    return [np.ascontiguousarray(big[4 + t : 4 + t + h, 4 + 2 * t : 4 + 2 * t + w]) for t in range(n)]


def _frames(data: bytes) -> list[Packet]:
    return unpack(data, registry.ids()).frames()


def _replace_payloads(data: bytes, new: dict[int, bytes]) -> bytes:
    """The stream with frame payloads replaced (packet lengths and CRCs made valid)."""
    c = unpack(data, registry.ids())
    packets = [Packet(p.type, new.get(p.frame, p.payload), p.frame, p.flags) if p.type == 2 else p
               for p in c.packets]
    return pack(c.header, packets)


def _rich_motion(width: int, height: int, seed: int) -> Motion:
    """Several fractional quarter-pel vectors (some pointing outside the frame) on 8-pixel blocks."""
    rng = np.random.default_rng(seed)
    vecs = np.array([[0, 0], [5, -3], [-7, 2], [13, 9], [-2, -11], [30, 1]], np.int64)
    rows, cols = -(-height // 8), -(-width // 8)
    return Motion(8, vecs, rng.integers(0, len(vecs), (rows, cols)).astype(np.int64))


def _repack(payload: bytes, **change: object) -> bytes:
    """A payload version 3, 4 or 5 frame with some of its parts changed (motion, field, lat, esc,
    n_esc, filt), its interpolation kept."""
    from dappled.codec.field.video.format import pack_filter, pack_frame, parse_frame

    f = parse_frame(payload)
    assert f.version in (3, 4, 5)
    filt = b"" if f.filter is None else pack_filter(f.filter)
    parts = {"motion": f.chunks.get("MOTN", b""), "field": f.chunks.get("FLD ", b""),
             "lat": f.chunks.get("LAT ", b""), "esc": f.chunks.get("ESC ", b""), "n_esc": f.n_esc,
             "filt": filt, "sharp8": f.version == 5, **change}
    return pack_frame(f.ftype, **parts)  # type: ignore[arg-type]


def _with_frames(data: bytes, payloads: list[bytes]) -> bytes:
    """The stream's header with these frame payloads, numbered from 0 (the first a keyframe)."""
    c = unpack(data, registry.ids())
    first = c.frames()[0]
    packets = [Packet(first.type, pl, i, first.flags if i == 0 else 0) for i, pl in enumerate(payloads)]
    return pack(dataclasses.replace(c.header, frame_count=len(payloads)), packets)


@pytest.fixture(scope="module")
def stream_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dappled.codec.field.video.format import FRAME_P_SKIP, pack_frame, pack_motion, parse_frame

    root = tmp_path_factory.mktemp("webfieldv")
    shutil.copy(CONFORMANCE / "fieldv.dpl", root / "conf.dpl")  # payload version 1
    shutil.copy(CONFORMANCE / "fieldv-v2.dpl", root / "conf2.dpl")  # version 2
    shutil.copy(CONFORMANCE / "fieldv-v3.dpl", root / "conf3.dpl")  # version 3
    shutil.copy(CONFORMANCE / "fieldv-v4.dpl", root / "conf4.dpl")  # version 4: filters on types 1, 2
    shutil.copy(CONFORMANCE / "fieldv-v4-skip.dpl", root / "conf4skip.dpl")  # and on a type 3
    shutil.copy(CONFORMANCE / "fieldv-v5.dpl", root / "conf5.dpl")  # version 5: the 8-tap interpolation
    shutil.copy(CONFORMANCE / "fieldv-v5-skip.dpl", root / "conf5skip.dpl")
    shutil.copy(CONFORMANCE / "fieldv-v6.dpl", root / "conf6.dpl")  # version 6: transform residuals
    # version 6 on a textured clip of an odd size: every predicted frame with a transform residual
    dct = encode_video(_clip(4, 45, 29), 25, "field", quality=8, gop=4, iterations=20, dct=1, block=8,
                       skip=0).data
    assert [parse_frame(p.payload).ftype for p in _frames(dct)] == [0, 4, 4, 4]
    (root / "dct.dpl").write_bytes(dct)
    # version 3, every predicted frame with a residual (skip=0): I P P | I P
    data = encode_video(_clip(5), 25, "field", dct=0, quality=4, gop=3, iterations=20, skip=0).data
    (root / "two.dpl").write_bytes(data)
    still = encode_video(moving_pattern(1, 48, 32) * 3, 25, "field", quality=4, gop=3, iterations=20).data
    assert [len(p.payload) for p in _frames(still)][1:] == [1, 1]  # nothing moves, no residual
    (root / "still.dpl").write_bytes(still)
    frames = _frames(data)
    new = {p.frame: _repack(p.payload, motion=pack_motion(_rich_motion(48, 32, p.frame), 48, 32))
           for p in frames if not p.keyframe}
    (root / "motion.dpl").write_bytes(_replace_payloads(data, new))
    # the interpolation chosen frame by frame (-O sharp8=2): I, 8 taps, cubic | I, cubic
    mixed = {k: _repack(v, sharp8=k == 1) for k, v in new.items()}
    assert [parse_frame(mixed[k]).version for k in (1, 2, 4)] == [5, 3, 3]
    (root / "mixinterp.dpl").write_bytes(_replace_payloads(data, mixed))
    # frames without a residual between those with one: I, 3 (moving), 1, 3 (still), 2, 3 (moving)
    rich = [pack_motion(_rich_motion(48, 32, k), 48, 32) for k in range(3)]
    mix = [frames[0].payload, pack_frame(FRAME_P_SKIP, motion=rich[0]), new[1],
           pack_frame(FRAME_P_SKIP), new[2], pack_frame(FRAME_P_SKIP, motion=rich[2])]
    (root / "skipmix.dpl").write_bytes(_with_frames(data, mix))
    assert [parse_frame(p).ftype for p in mix] == [0, 3, 1, 3, 2, 3]
    # networks sent again with every residual (renet): types 0 1 1 1 1, each with its own networks
    renet = encode_video(_clip(5), 25, "field", dct=0, quality=6, gop=5, iterations=20, skip=0, cut_db=0,
                         renet=0.01).data
    assert [parse_frame(p.payload).ftype for p in _frames(renet)] == [0, 1, 1, 1, 1]
    (root / "renet.dpl").write_bytes(renet)
    # corruptions: a packet CRC, a payload the field video parser refuses (CRC valid), a cut
    p1 = frames[1]
    flipped = bytearray(data)
    at = data.index(p1.payload) + 30
    flipped[at] ^= 0x5A
    (root / "crc.dpl").write_bytes(bytes(flipped))
    v2 = (CONFORMANCE / "fieldv-v2.dpl").read_bytes()  # version 2: chunks and VHED
    ch = unpack_chunks(_frames(v2)[1].payload)
    ch["VHED"] = bytes([9]) + ch["VHED"][1:]
    (root / "version.dpl").write_bytes(_replace_payloads(v2, {1: pack_chunks(ch)}))
    (root / "type.dpl").write_bytes(_replace_payloads(data, {1: bytes([0xF4]) + p1.payload[1:]}))
    cut = data.index(frames[2].payload) + 20
    (root / "cut.dpl").write_bytes(data[:cut])  # ends inside frame 2's packet
    # frame 2 (latents only) declares more escapes than it has latents: refused where its
    # latents are parsed, in a helper worker when there are helpers
    (root / "escapes.dpl").write_bytes(_replace_payloads(data, {2: _repack(frames[2].payload, n_esc=100000)}))
    return root


@pytest.fixture(scope="module")
def server(stream_dir: Path) -> Iterator[str]:
    with served(stream_dir) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def test_the_codec_id_is_the_registrys() -> None:
    assert registry.video_codec("field").codec_id == CODEC_ID
    js = (ROOT / "dappled" / "stream" / "web" / "fieldv.js").read_text()
    assert f"export const FIELDV_CODEC_ID = {CODEC_ID};" in js


def _open(browser, server: str, name: str, query: str = ""):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server}/player?src=/files/{name}{query}")
    page.wait_for_function("window.dappled && (window.dappled.state.ended || window.dappled.state.error)",
                           timeout=120_000)
    return page, errors


def _capture(page, i: int, shape: tuple[int, ...]) -> np.ndarray:
    rgb = base64.b64decode(page.evaluate(f"window.dappled.captureFrame({i})"))
    return np.frombuffer(rgb, np.uint8).reshape(shape)


STREAMS = ["conf.dpl", "conf2.dpl", "conf3.dpl", "conf4.dpl", "conf4skip.dpl", "conf5.dpl", "conf5skip.dpl",
           "conf6.dpl", "dct.dpl", "two.dpl", "motion.dpl", "mixinterp.dpl",
           "still.dpl", "skipmix.dpl", "renet.dpl"]


@pytest.mark.slow
@pytest.mark.parametrize("name", STREAMS)
def test_browser_player_shows_every_frame_of_the_python_decoder(browser, server: str, stream_dir: Path,
                                                                name: str) -> None:
    data = (stream_dir / name).read_bytes()
    ref = decode_video(data)
    if name == "motion.dpl":  # the rewritten motion really moves blocks by fractions of a pixel
        assert not np.array_equal(ref[1], decode_video((stream_dir / "two.dpl").read_bytes())[1])
    page, errors = _open(browser, server, name)
    st = page.evaluate("window.dappled.state")
    assert not errors and st["error"] is None, (errors, st)
    assert st["ended"] and st["worker"] and st["frameCount"] == len(ref)
    assert st["synth"] == "wasm" and st["note"] is None, st  # the default: WebAssembly synthesis
    # a helper per core but one (left to the page)
    assert st["threads"] == page.evaluate("Math.max(1, navigator.hardwareConcurrency - 1)")
    # every frame decoded and shown, or dropped when a display tick came late (a loaded machine)
    assert st["shown"] + st["dropped"] == len(ref) and st["decoded"] >= len(ref), st
    assert st["shown"] >= 1 and len(st["droppedAt"]) == st["dropped"], st
    assert st["firstFrameMs"] > 0 and st["synthMsSum"] > 0  # (a frame without a residual: 0 ms)
    assert page.inner_text("#counter") == f"frame {st['frame'] + 1} / {len(ref)}"
    for i, r in enumerate(ref):
        assert np.array_equal(_capture(page, i, r.shape), r), (name, i)  # tolerance 0
    # the canvas shows the last captured frame
    shown = page.evaluate("""() => { const c = document.getElementById('screen');
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }""")
    rgba = np.array(shown, np.uint8).reshape(*ref[-1].shape[:2], 4)
    assert np.array_equal(rgba[..., :3], ref[-1])
    page.close()


@pytest.mark.slow
def test_seeking_restarts_from_the_intra_frame_before(browser, server: str, stream_dir: Path) -> None:
    data = (stream_dir / "two.dpl").read_bytes()
    assert [p.keyframe for p in _frames(data)] == [True, False, False, True, False]
    ref = decode_video(data)
    # a sequencer worker over 3 helpers, the worker alone, and the page's own thread (with the
    # WebAssembly synthesis), and the helpers with the JavaScript one
    plays = (("&threads=3", 3), ("&threads=1", 1), ("&worker=0", 1), ("&threads=3&synth=js", 3))
    for query, threads in plays:
        page, errors = _open(browser, server, "two.dpl", query)
        st = page.evaluate("window.dappled.state")
        assert st["worker"] == (query != "&worker=0") and st["threads"] == threads, st
        assert st["synth"] == ("js" if "synth=js" in query else "wasm") and st["note"] is None, (query, st)
        for i in (4, 1, 3, 2, 0, 4):  # backwards, into the other group, and forwards again
            assert np.array_equal(_capture(page, i, ref[i].shape), ref[i]), (query, i)
        page.evaluate("window.dappled.seek(3); window.dappled.state.playing = true")
        page.wait_for_function("window.dappled.state.ended", timeout=60_000)
        st = page.evaluate("window.dappled.state")
        assert st["frame"] == 4 and st["error"] is None and not errors
        page.close()


@pytest.mark.slow
def test_browser_motion_compensation_equals_pythons(browser, server: str) -> None:
    page = browser.new_page()
    page.goto(f"{server}/player")
    rng = np.random.default_rng(7)
    for w, h, block in ((53, 37, 8), (48, 32, 16), (17, 9, 8)):
        prev = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        vecs = rng.integers(-4 * w, 4 * w + 1, (5, 2)).astype(np.int64)
        vecs[1] = (3, -1)  # fractional in both directions
        labels = rng.integers(0, 5, (-(-h // block), -(-w // block))).astype(np.int64)
        m = Motion(block, vecs, labels)
        for filt, fn in (("bilinear", "compensate"), ("cubic", "compensateCubic"),
                         ("sharp8", "compensateSharp8")):
            ref = compensate(prev, m, filt=filt)
            got = page.evaluate("""async ([prev, w, h, m, fn]) => {
                const v = await import('/web/fieldv.js');
                const motion = { block: m.block, vx: Int32Array.from(m.vx), vy: Int32Array.from(m.vy),
                                 labels: Int32Array.from(m.labels), rows: m.rows, cols: m.cols };
                return Array.from(v[fn](Uint8Array.from(prev), motion, w, h));
            }""", [prev.ravel().tolist(), w, h, {
                "block": block, "vx": vecs[:, 0].tolist(), "vy": vecs[:, 1].tolist(),
                "labels": labels.ravel().tolist(), "rows": labels.shape[0], "cols": labels.shape[1]}, fn])
            assert np.array_equal(np.array(got, np.uint8).reshape(ref.shape), ref), (w, h, block, filt)
            assert not np.array_equal(ref, prev)
    page.close()


@pytest.mark.slow
def test_browser_prediction_filter_equals_pythons(browser, server: str) -> None:
    from dappled.codec.prediction_filter import BIAS_LIMIT, N_COEFS, TAP_LIMIT, apply_filter

    page = browser.new_page()
    page.goto(f"{server}/player")
    rng = np.random.default_rng(11)
    for w, h in ((53, 37), (1, 1), (2, 7), (17, 1)):
        img = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        for scale in (40, TAP_LIMIT):  # near the identity, and up to the format's limits
            coefs = rng.integers(-scale, scale + 1, (3, N_COEFS)).astype(np.int64)
            coefs[:, 4] += 256
            coefs[:, :5] = np.clip(coefs[:, :5], -TAP_LIMIT, TAP_LIMIT)
            coefs[:, 5] = rng.integers(-BIAS_LIMIT, BIAS_LIMIT + 1, 3)
            ref = apply_filter(img, coefs)
            got = page.evaluate("""async ([img, c, w, h]) => {
                const v = await import('/web/fieldv.js');
                const out = new Uint8Array(img.length);
                return Array.from(v.applyFilter(Uint8Array.from(img), Int32Array.from(c), w, h, out));
            }""", [img.ravel().tolist(), coefs.ravel().tolist(), w, h])
            assert np.array_equal(np.array(got, np.uint8).reshape(ref.shape), ref), (w, h, scale)
    page.close()


@pytest.mark.slow
@pytest.mark.parametrize(("name", "w", "h"), [("two.dpl", 48, 32), ("dct.dpl", 45, 29)])
def test_browser_and_python_agree_on_corrupted_predicted_frames(browser, server: str, stream_dir: Path,
                                                                name: str, w: int, h: int) -> None:
    """Byte flips in a predicted frame (two.dpl: latents only; dct.dpl: a transform residual;
    fieldv.js called directly, CRC bypassed): where Python's apply_frame refuses, fieldv.js throws
    a BitstreamError; where it decodes, the pixels are the same."""
    from dappled.codec.field.video.decoder import apply_frame

    data = (stream_dir / name).read_bytes()
    frames = _frames(data)
    state = None
    for p in frames[:2]:
        state = apply_frame(p.payload, state, w, h)
    good = frames[2].payload
    rng = np.random.default_rng(11)
    page = browser.new_page()
    page.goto(f"{server}/player")
    prefix = [base64.b64encode(p.payload).decode() for p in frames[:2]]
    outcomes = {"refused": 0, "decoded": 0}
    from dappled.codec.field.video.format import parse_frame

    dct = parse_frame(good).chunks.get("DCT ")  # its qp bytes: any value decodes or is refused
    qp_at = len(good) - len(dct) if dct is not None else None
    for k in range(40 if qp_at is not None else 30):
        bad = bytearray(good)
        if k >= 30:
            bad[qp_at + k % 3] = int(rng.integers(0, 80))
        for pos in rng.integers(0, len(bad), int(rng.integers(1, 3))) if k < 30 else ():
            bad[pos] ^= int(rng.integers(1, 256))
        try:
            ref = apply_frame(bytes(bad), state, w, h).frame
        except BitstreamError:
            ref = None
        got = page.evaluate("""async ([prefix, b64, w, h]) => {
            const f = await import('/web/field.js');
            const v = await import('/web/fieldv.js');
            const tb = await f.loadTables();
            const bytes = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
            let st = null;
            for (const p of prefix) st = v.applyFrame(bytes(p), st, w, h, tb);
            try { return { rgb: Array.from(v.applyFrame(bytes(b64), st, w, h, tb).frame) }; }
            catch (e) { return { error: e.name + ': ' + e.message }; }
        }""", [prefix, base64.b64encode(bytes(bad)).decode(), w, h])
        outcomes[same_outcome(got, ref)] += 1
    assert outcomes["refused"] > 0 and outcomes["decoded"] > 0, outcomes  # both paths taken
    page.close()


@pytest.mark.slow
def test_browser_and_python_agree_on_corrupted_motion(browser, server: str, stream_dir: Path) -> None:
    """Byte flips and cuts inside the entropy-coded motion (payload version 2) of the rewritten
    predicted frames: fieldv.js refuses where Python's parse_motion refuses, and otherwise
    decodes the same vectors for every block."""
    from dappled.codec.field.video.format import parse_frame, parse_motion

    frames = _frames((stream_dir / "motion.dpl").read_bytes())
    parts = [parse_frame(p.payload).chunks for p in frames]
    chunks = [c["MOTN"] for c in parts if "MOTN" in c]
    rng = np.random.default_rng(12)
    cases = []
    for good in chunks[:2]:
        cases += [good, good[: len(good) // 2], good[:-1]]
        for _ in range(15):
            bad = bytearray(good)
            bad[int(rng.integers(1, len(bad)))] ^= int(rng.integers(1, 256))
            cases.append(bytes(bad))
    page = browser.new_page()
    page.goto(f"{server}/player")
    got = page.evaluate("""async (cases) => {
        const v = await import('/web/fieldv.js');
        return cases.map((b64) => {
            try {
                const m = v.parseMotion(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)), 48, 32, 2);
                return { vx: Array.from(m.labels, (l) => m.vx[l]), vy: Array.from(m.labels, (l) => m.vy[l]) };
            } catch (e) { return { error: e.name + ': ' + e.message }; }
        });
    }""", [base64.b64encode(c).decode() for c in cases])
    outcomes = {"refused": 0, "decoded": 0}
    for case, g in zip(cases, got, strict=True):
        try:
            m = parse_motion(case, 48, 32, 2)
        except BitstreamError as e:
            assert "error" in g and g["error"].startswith("BitstreamError"), (g, str(e))
            outcomes["refused"] += 1
            continue
        v = m.vectors[m.labels.ravel()]
        assert g.get("vx") == v[:, 0].tolist() and g.get("vy") == v[:, 1].tolist(), g
        outcomes["decoded"] += 1
    assert outcomes["refused"] > 0 and outcomes["decoded"] >= 2, outcomes
    page.close()


@pytest.mark.slow
@pytest.mark.parametrize(("name", "needle", "query"), [
    ("crc.dpl", "CRC", ""),
    ("version.dpl", "unsupported field video payload version 9", ""),
    ("version.dpl", "unsupported field video payload version 9", "&threads=3"),
    ("type.dpl", "unknown field video frame type 4", ""),
    ("type.dpl", "unknown field video frame type 4", "&threads=3"),
    ("cut.dpl", "ends", ""),
    ("escapes.dpl", "more escapes than latents", "&threads=1"),
    ("escapes.dpl", "more escapes than latents", "&threads=3"),
    ("escapes.dpl", "more escapes than latents", "&worker=0"),
])
def test_browser_player_reports_a_corrupted_field_video(browser, server: str, stream_dir: Path, name: str,
                                                        needle: str, query: str) -> None:
    if name in ("escapes.dpl", "type.dpl"):  # the Python decoder refuses it the same way
        with pytest.raises(BitstreamError, match=needle):
            decode_video((stream_dir / name).read_bytes())
    page, errors = _open(browser, server, name, query)
    page.wait_for_function("window.dappled.state.error && window.dappled.state.downloaded", timeout=60_000)
    st = page.evaluate("window.dappled.state")
    assert not errors
    assert needle in st["error"] and name in st["error"], st["error"]
    assert needle in page.inner_text("#message")
    # frames before the break
    good = {"crc.dpl": 1, "version.dpl": 1, "type.dpl": 1, "cut.dpl": 2, "escapes.dpl": 2}[name]
    assert st["shown"] <= good and st["frame"] < good and st["decoded"] <= good, st
    page.close()


@pytest.mark.slow
def test_browser_webgl_synthesis_of_a_field_video(browser, server: str, stream_dir: Path) -> None:
    """float32 shader passes: within +-1 per frame, and a predicted frame starts from the
    previous one, so frame n of a group is within n + 1 of the Python decoder's."""
    data = (stream_dir / "motion.dpl").read_bytes()
    ref = decode_video(data)
    page, errors = _open(browser, server, "motion.dpl", "&synth=gl")
    st = page.evaluate("window.dappled.state")
    assert not errors and st["error"] is None and st["ended"], (errors, st)
    assert st["synth"] == "gl" and st["note"] is None
    keys = [p.keyframe for p in _frames(data)]
    pos = 0
    for i, r in enumerate(ref):
        pos = 0 if keys[i] else pos + 1
        got = _capture(page, i, r.shape)
        assert np.abs(got.astype(np.int64) - r).max() <= pos + 1, i
    page.close()

