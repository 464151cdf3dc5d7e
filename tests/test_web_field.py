"""The field image decoder in the browser (dappled/stream/web/field.js), in a real headless
Chromium served by a real `dappled serve`: the latents equal the Python decoder's in every grid,
and the player shows the Python decoder's pixels bit for bit (field.js computes the synthesis in
exact float64 as Python does, so the tolerance is 0), for three rates and a payload-version-1
stream; the opt-in WebGL2 synthesis (field-gl.js, float32) is within +-1 on every channel; a
corrupted stream is an error on the page, never a hang.
"""

from __future__ import annotations

import base64
import gzip
import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _browser import CHROMIUM_ARGS, chromium, ensure_chromium, same_outcome, served
from PIL import Image

from dappled.codec.api import decode_image, encode_image
from dappled.codec.field.format import unpack_payload
from dappled.codec.field.web_tables import WEB_FILE, table_bytes
from dappled.models.field.integer import decode_latents
from dappled.models.field.layout import grids

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "dappled" / "datasets" / "samples" / "kodim23.png"
CONFORMANCE = ROOT / "tests" / "conformance"
RATES = (1, 4, 8)  # low, middle, high rate


def _frame_packet(data: bytes) -> tuple[int, int]:
    """(offset, payload length) of the first FRAME packet of a container."""
    o = 32
    while o + 16 <= len(data):
        ptype, length = data[o], struct.unpack_from("<I", data, o + 8)[0]
        if ptype == 2:
            return o, length
        o += 16 + length
    raise AssertionError("no frame packet")


def _payload(data: bytes) -> bytes:
    o, n = _frame_packet(data)
    return data[o + 16 : o + 16 + n]


def _with_payload(data: bytes, payload: bytes) -> bytes:
    """The stream with its frame payload replaced (and the packet's length and CRC made valid)."""
    o, n = _frame_packet(data)
    head = bytearray(data[o : o + 16])
    struct.pack_into("<II", head, 8, len(payload), zlib.crc32(payload))
    return data[:o] + bytes(head) + payload + data[o + 16 + n :]


def _size(data: bytes) -> tuple[int, int]:
    return struct.unpack_from("<II", data, 8)  # width, height


@pytest.fixture(scope="module")
def stream_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("webfield")
    img = np.asarray(Image.open(SAMPLE).convert("RGB"))[200:264, 300:396]  # 96x64
    for q in RATES:
        (root / f"q{q}.dpl").write_bytes(encode_image(img, "field", quality=q, iterations=30))
    shutil.copy(CONFORMANCE / "field-v1.dpl", root / "v1.dpl")
    good = (root / "q4.dpl").read_bytes()
    o, _ = _frame_packet(good)
    flipped = bytearray(good)
    flipped[o + 16 + 40] ^= 0x5A  # inside the payload: the packet CRC fails
    (root / "crc.dpl").write_bytes(bytes(flipped))
    p = bytearray(_payload(good))
    assert p[1:5] == b"HEAD"
    p[9] = 9  # payload version 9, CRC made valid: the field parser must refuse it
    (root / "version.dpl").write_bytes(_with_payload(good, bytes(p)))
    (root / "cut.dpl").write_bytes(good[: o + 16 + 30])  # ends inside the frame packet
    return root


@pytest.fixture(scope="module")
def server(stream_dir: Path) -> Iterator[str]:
    with served(stream_dir) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def test_shipped_tables_equal_pythons() -> None:
    shipped = gzip.decompress(WEB_FILE.read_bytes())
    assert shipped == table_bytes(), "rewrite with python -m dappled.codec.field.web_tables"


STREAMS = [f"q{q}.dpl" for q in RATES] + ["v1.dpl"]


_FIELD_JS = """const f = await import('/web/field.js');
    const tb = await f.loadTables();
    if (!(await f.loadDecoderWasm())) throw new Error('field-decoder.wasm did not load');
    if (f.exactBackend(synth) !== synth) throw new Error('not ' + synth);
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
"""


def _in_page(page, body: str, payload: bytes, w: int, h: int, synth: str):
    """Run ``body`` in the page with field.js as ``f``, its tables ``tb``, the exact loops
    ``synth`` ("js" or "wasm") in use and the payload as ``bytes``; its result."""
    return page.evaluate("async ([b64, w, h, synth]) => {" + _FIELD_JS + body + "}",
                         [base64.b64encode(payload).decode(), w, h, synth])



def _shows_pythons_pixels(page, stream: Path) -> None:
    """The player's frame 0 is the Python decoder's image of ``stream``, bit for bit."""
    ref = decode_image(stream.read_bytes())
    rgb = base64.b64decode(page.evaluate("window.dappled.captureFrame(0)"))
    assert np.array_equal(np.frombuffer(rgb, np.uint8).reshape(ref.shape), ref)

@pytest.mark.slow
def test_browser_latents_equal_pythons_in_every_grid(browser, server: str, stream_dir: Path) -> None:
    page = browser.new_page()
    page.goto(f"{server}/player")
    for synth, name in [(s, n) for s in ("js", "wasm") for n in STREAMS]:  # JavaScript, WebAssembly
        data = (stream_dir / name).read_bytes()
        w, h = _size(data)
        payload = _payload(data)
        p = unpack_payload(payload, w, h)
        gs = grids(h, w)
        ref = decode_latents(p.words, p.excess, gs, p.net)
        got = _in_page(page, """const p = f.parsePayload(bytes, w, h);
            const grids = f.decodeLatents(p, tb).map((g) => Array.from(g));
            return { version: p.version, escapes: p.excess.length, grids };""", payload, w, h, synth)
        assert got["version"] == (1 if name == "v1.dpl" else 2)
        assert got["escapes"] == len(p.excess)
        assert len(got["grids"]) == len(gs) == 19
        for k, (g, q) in enumerate(zip(gs, ref, strict=True)):
            js = np.array(got["grids"][k], np.int64).reshape(g.height, g.width)
            assert np.array_equal(js, q), (synth, name, k)
        assert any(np.abs(q).max() > 0 for q in ref), name  # not all zero: the comparison bites
    page.close()


def _open(browser, server: str, name: str, query: str = ""):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server}/player?src=/files/{name}{query}")
    page.wait_for_function("window.dappled && (window.dappled.state.ended || window.dappled.state.error)",
                           timeout=120_000)
    return page, errors


@pytest.mark.slow
@pytest.mark.parametrize(("name", "synth"), [(n, "wasm") for n in STREAMS] + [(STREAMS[0], "js")])
def test_browser_player_shows_the_python_decoders_pixels(browser, server: str, stream_dir: Path,
                                                         name: str, synth: str) -> None:
    """The player's default synthesis is the WebAssembly one; ?synth=js the JavaScript one: the
    same pixels, the Python decoder's."""
    ref = decode_image((stream_dir / name).read_bytes())
    page, errors = _open(browser, server, name, "&synth=js" if synth == "js" else "")
    st = page.evaluate("window.dappled.state")
    assert not errors and st["error"] is None, (errors, st)
    assert st["synth"] == synth and st["note"] is None, st
    assert st["ended"] and st["shown"] == 1 and st["frameCount"] == 1
    assert st["latentMs"] > 0 and st["synthMs"] > 0
    assert st["worker"] is True  # decoded in the worker (fieldv-worker.js), not on the page
    assert page.inner_text("#counter") == "frame 1 / 1"
    rgb = base64.b64decode(page.evaluate("window.dappled.captureFrame(0)"))
    img = np.frombuffer(rgb, np.uint8).reshape(ref.shape)
    assert np.array_equal(img, ref)  # bit-exact: tolerance 0 on every channel
    # and what the canvas shows is that image
    shown = page.evaluate("""() => { const c = document.getElementById('screen');
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }""")
    rgba = np.array(shown, np.uint8).reshape(ref.shape[0], ref.shape[1], 4)
    assert np.array_equal(rgba[..., :3], ref) and (rgba[..., 3] == 255).all()
    page.close()


@pytest.mark.slow
@pytest.mark.parametrize(("name", "needle"), [("crc.dpl", "CRC"),
                                              ("version.dpl", "unsupported field payload version 9"),
                                              ("cut.dpl", "ends")])
def test_browser_player_reports_a_corrupted_field_stream(browser, server: str, name: str,
                                                         needle: str) -> None:
    page, errors = _open(browser, server, name)
    page.wait_for_function("window.dappled.state.error && window.dappled.state.downloaded", timeout=60_000)
    st = page.evaluate("window.dappled.state")
    assert not errors
    assert needle in st["error"] and name in st["error"], st["error"]
    assert needle in page.inner_text("#message")
    assert st["shown"] == 0
    page.close()


def _synthetic_payload(height: int, width: int, seed: int) -> bytes:
    """A payload no encoder run makes: the widest ARM context (16 neighbours), two hidden ARM
    layers, a wide synthesis with a residual block, odd image sizes, heavy-tailed latents (so
    many escapes), random network integers; coded by the Python encoder's own functions."""
    from dappled.codec.field.format import pack_payload
    from dappled.models.field.integer import QuantNet, QuantTensor, encode_latents, tensor_shapes
    from dappled.models.field.layout import Arch

    rng = np.random.default_rng(seed)
    arch = Arch(ctx=16, arm_hidden=12, arm_layers=2, synth_hidden=16, res_hidden=6)
    gs = grids(height, width)
    shapes = tensor_shapes(arch, len(gs))
    n_arm = 2 * (arch.arm_layers + 1)
    ks = [9, 9, 10, 10, 12, 12, 12, 12, 13, 13, 12, 12, 14, 14]  # ARM, then synthesis
    tensors = [QuantTensor(rng.integers(-600, 601, s).astype(np.int64), k)
               for s, k in zip(shapes, ks, strict=True)]
    tensors[n_arm + 3] = QuantTensor(rng.integers(3000, 5000, 3).astype(np.int64), 13)  # rgb bias ~0.5
    net = QuantNet(arch, tensors[:n_arm], tensors[n_arm:], step_shift=-1, step_ladder=1)
    latents = []
    for g in gs:
        q = np.rint(rng.laplace(0, 3.0, (g.height, g.width))).astype(np.int64)
        q[rng.random(q.shape) < 0.02] = rng.integers(-4095, 4096)  # far outside every table
        latents.append(q)
    coded = encode_latents(latents, gs, net)
    assert len(coded.excess) > 10  # the escape path is exercised
    return pack_payload(net, coded.words, coded.excess)


@pytest.mark.slow
def test_browser_decodes_a_wide_synthetic_payload_like_python(browser, server: str) -> None:
    from dappled.codec.field.decoder import decode_payload

    h, w = 37, 53
    payload = _synthetic_payload(h, w, 5)
    p = unpack_payload(payload, w, h)
    ref_latents = decode_latents(p.words, p.excess, grids(h, w), p.net)
    ref = decode_payload(payload, w, h)
    assert len(np.unique(ref)) > 150 and ((ref > 0) & (ref < 255)).mean() > 0.8  # varied, unclipped
    page = browser.new_page()
    page.goto(f"{server}/player")
    for synth in ("js", "wasm"):  # both exact syntheses: JavaScript and WebAssembly
        got = _in_page(page, """const r = f.decodeFieldPayload(bytes, w, h, tb);
            return { rgb: Array.from(r.rgb), grids: r.latents.map((g) => Array.from(g)) };""",
                       payload, w, h, synth)
        for k, q in enumerate(ref_latents):
            assert np.array_equal(np.array(got["grids"][k], np.int64).reshape(q.shape), q), k
        assert np.array_equal(np.array(got["rgb"], np.uint8).reshape(ref.shape), ref), synth
    page.close()


@pytest.mark.slow
def test_browser_player_decodes_a_field_image_on_the_page_thread_too(browser, server: str,
                                                                    stream_dir: Path) -> None:
    ref = decode_image((stream_dir / "q8.dpl").read_bytes())
    page, errors = _open(browser, server, "q8.dpl", "&worker=0")
    st = page.evaluate("window.dappled.state")
    assert not errors and st["error"] is None and st["ended"] and st["shown"] == 1, (errors, st)
    assert st["worker"] is False
    rgb = base64.b64decode(page.evaluate("window.dappled.captureFrame(0)"))
    assert np.array_equal(np.frombuffer(rgb, np.uint8).reshape(ref.shape), ref)
    page.close()


def _sparse_payload(height: int, width: int, seed: int) -> bytes:
    """A low-rate-like payload: the real streams' small network (8 contexts, 8 hidden ARM units,
    8 synthesis channels, a 2-channel residual block), random weights, and latents that are 0
    but for a few, at every level: the synthesis's constant regions (skipped by field.js) sit
    next to computed ones, around isolated latents and along the image's border."""
    from dappled.codec.field.format import pack_payload
    from dappled.models.field.integer import QuantNet, QuantTensor, encode_latents, tensor_shapes
    from dappled.models.field.layout import Arch

    rng = np.random.default_rng(seed)
    arch = Arch(ctx=8, arm_hidden=8, arm_layers=1, synth_hidden=8, res_hidden=2)
    gs = grids(height, width)
    shapes = tensor_shapes(arch, len(gs))
    n_arm = 2 * (arch.arm_layers + 1)
    ks = [9, 9, 10, 10, 12, 12, 12, 12, 13, 13, 12, 12]
    tensors = [QuantTensor(rng.integers(-600, 601, s).astype(np.int64), k)
               for s, k in zip(shapes, ks, strict=True)]
    tensors[n_arm + 3] = QuantTensor(rng.integers(3000, 5000, 3).astype(np.int64), 13)  # rgb bias ~0.5
    net = QuantNet(arch, tensors[:n_arm], tensors[n_arm:], step_shift=0, step_ladder=1)
    latents = []
    for g in gs:
        q = np.zeros((g.height, g.width), np.int64)
        pick = rng.random(q.shape) < (0.004 if g.level < 3 else 0.05)
        q[pick] = rng.integers(-6, 7, int(pick.sum()))
        latents.append(q)
    coded = encode_latents(latents, gs, net)
    return pack_payload(net, coded.words, coded.excess)


@pytest.mark.slow
def test_browser_decodes_sparse_payloads_like_python_one_after_another(browser, server: str) -> None:
    """Mostly zero latents (field.js skips the constant parts of the synthesis) and frames of
    other sizes and networks decoded in between, in one page (field.js's buffers are kept across
    decodes and remade when the size or the network changes): every image equals Python's."""
    from dappled.codec.field.decoder import decode_payload

    cases = [(45, 61, _sparse_payload(45, 61, 1)), (37, 53, _synthetic_payload(37, 53, 5)),
             (45, 61, _sparse_payload(45, 61, 2)), (64, 96, _sparse_payload(64, 96, 3))]
    cases.append(cases[0])
    page = browser.new_page()
    page.goto(f"{server}/player")
    # JavaScript, then WebAssembly (its buffers too are remade when the size or network changes)
    for synth, (h, w, payload) in [("js", c) for c in cases] + [("wasm", c) for c in cases]:
        ref = decode_payload(payload, w, h)
        got = _in_page(page, "return Array.from(f.decodeFieldPayload(bytes, w, h, tb).rgb);",
                       payload, w, h, synth)
        assert np.array_equal(np.array(got, np.uint8).reshape(ref.shape), ref), (synth, h, w)
        # the case bites: flat parts and varied parts (not all one colour, not clipped)
        colours, counts = np.unique(ref.reshape(-1, 3), axis=0, return_counts=True)
        assert len(colours) > 20 and ((ref > 0) & (ref < 255)).mean() > 0.8, (h, w)
        if payload is not cases[1][2]:
            assert counts.max() > 0.05 * h * w, (h, w, counts.max())
    page.close()


@pytest.mark.slow
def test_without_webgl_a_field_image_still_shows_and_a_splat_stream_says_why_not(
        browser, stream_dir: Path, server: str) -> None:
    """Graceful fallback: field.js needs no WebGL (exact JavaScript synthesis, 2D canvas); the
    splat player needs WebGL2 with float render targets and says so on the page when it is missing."""
    shutil.copy(CONFORMANCE / "splatv.dpl", stream_dir / "splatv.dpl")
    # a second browser, from the same Playwright, with WebGL switched off
    b = browser.browser_type.launch(executable_path=ensure_chromium(),
                                    args=[*CHROMIUM_ARGS, "--disable-webgl"])
    try:
        page, errors = _open(b, server, "splatv.dpl")
        assert page.evaluate("!document.createElement('canvas').getContext('webgl2')")  # really none
        st = page.evaluate("window.dappled.state")
        assert st["error"] and "WebGL2" in st["error"] and "cannot show" in st["error"], st["error"]
        assert "WebGL2" in page.inner_text("#message") and st["shown"] == 0
        page.close()
        page, errors = _open(b, server, "q4.dpl", "&synth=gl")  # asks for WebGL2: told, falls back
        st = page.evaluate("window.dappled.state")
        assert not errors and st["error"] is None and st["ended"] and st["shown"] == 1
        assert st["synth"] == "wasm" and "WebGL2 synthesis unavailable" in page.inner_text("#message")
        _shows_pythons_pixels(page, stream_dir / "q4.dpl")
        page.close()
    finally:
        b.close()


@pytest.mark.slow
@pytest.mark.parametrize("query", ["", "&worker=0"])
def test_without_the_webassembly_module_the_javascript_synthesis_shows_the_same_pixels(
        browser, stream_dir: Path, server: str, query: str) -> None:
    """Graceful fallback: where field-decoder.wasm cannot be had (here: the server answers 404) the
    player uses the JavaScript synthesis, says so on the page, and shows the same pixels."""
    ctx = browser.new_context()
    asked: list[str] = []

    def refuse(route) -> None:
        asked.append(route.request.url)
        route.fulfill(status=404, body="no")

    ctx.route("**/field-decoder.wasm", refuse)
    try:
        page, errors = _open(ctx, server, "q4.dpl", query)
        st = page.evaluate("window.dappled.state")
        assert asked, "the player never asked for field-decoder.wasm"
        assert not errors and st["error"] is None and st["ended"] and st["shown"] == 1, (errors, st)
        assert st["synth"] == "js" and "WebAssembly decoder unavailable" in page.inner_text("#message"), st
        _shows_pythons_pixels(page, stream_dir / "q4.dpl")
        page.close()
    finally:
        ctx.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", STREAMS)
def test_browser_webgl_synthesis_is_within_one_of_the_python_decoder(browser, server: str, stream_dir: Path,
                                                                     name: str) -> None:
    ref = decode_image((stream_dir / name).read_bytes())
    page, errors = _open(browser, server, name, "&synth=gl")
    st = page.evaluate("window.dappled.state")
    assert not errors and st["error"] is None and st["ended"] and st["shown"] == 1, (errors, st)
    assert st["synth"] == "gl" and st["note"] is None
    rgb = base64.b64decode(page.evaluate("window.dappled.captureFrame(0)"))
    img = np.frombuffer(rgb, np.uint8).reshape(ref.shape)
    assert np.abs(img.astype(np.int64) - ref).max() <= 1  # float32 passes: +-1 on every channel
    page.close()


@pytest.mark.slow
def test_browser_webgl_synthesis_of_a_wide_synthetic_payload(browser, server: str) -> None:
    """The shader passes with 16 hidden channels (4 texture layers) and a 6-channel residual
    block (2 layers), which no preset stream at these sizes exercises."""
    from dappled.codec.field.decoder import decode_payload

    h, w = 37, 53
    payload = _synthetic_payload(h, w, 5)
    ref = decode_payload(payload, w, h)
    page = browser.new_page()
    page.goto(f"{server}/player")
    got = page.evaluate("""async ([b64, w, h]) => {
        const f = await import('/web/field.js');
        const { FieldSynthGL } = await import('/web/field-gl.js');
        const tb = await f.loadTables();
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        return Array.from(f.decodeFieldPayload(bytes, w, h, tb, new FieldSynthGL()).rgb);
    }""", [base64.b64encode(payload).decode(), w, h])
    img = np.array(got, np.uint8).reshape(ref.shape)
    assert np.abs(img.astype(np.int64) - ref).max() <= 1
    page.close()


@pytest.mark.slow
def test_browser_and_python_agree_on_corrupted_payloads(browser, server: str, stream_dir: Path) -> None:
    """Byte flips anywhere in the payload (CRC bypassed: field.js is called directly): where the
    Python decoder refuses the payload, field.js throws a BitstreamError; where it decodes,
    field.js gives the same pixels. Every call returns (bounded work, never a hang)."""
    from dappled.codec.field.decoder import decode_payload
    from dappled.errors import BitstreamError

    data = (stream_dir / "q8.dpl").read_bytes()
    w, h = _size(data)
    good = _payload(data)
    rng = np.random.default_rng(11)
    page = browser.new_page()
    page.goto(f"{server}/player")
    outcomes = {"refused": 0, "decoded": 0}
    for _ in range(40):
        bad = bytearray(good)
        for pos in rng.integers(0, len(bad), int(rng.integers(1, 4))):
            bad[pos] ^= int(rng.integers(1, 256))
        try:
            ref = decode_payload(bytes(bad), w, h)
        except BitstreamError:
            ref = None
        for synth in ("js", "wasm"):  # the JavaScript and the WebAssembly loops alike
            got = _in_page(page, """try {
                    return { rgb: Array.from(f.decodeFieldPayload(bytes, w, h, tb).rgb) };
                } catch (e) { return { error: e.name + ': ' + e.message }; }""", bytes(bad), w, h, synth)
            outcomes[same_outcome(got, ref)] += 1
    assert outcomes["refused"] > 0 and outcomes["decoded"] > 0, outcomes  # both paths taken
    page.close()
