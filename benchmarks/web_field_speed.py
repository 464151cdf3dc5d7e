"""Field images in the browser (issue 19): decode time of a field stream in headless Chromium
(ARM + rANS and synthesis apart) and the size of the browser decoder.

    PYTHONPATH=. .venv/bin/python benchmarks/web_field_speed.py runs/issue19/kodim23-q4.dpl --runs 5

Serves the stream's folder with `dappled serve --port 0`, opens the player page on it (the
player decodes and shows the image: its own timing is the first run), then decodes the same
payload `--runs` more times in the page (after one untimed decode there: the player decodes in
its worker, so the page's own field.js starts cold) with each of field.js's exact decoders, its
JavaScript loops (`js`) and its WebAssembly ones (`wasm`, field-decoder.wasm), both checked equal
to the Python decoder's pixels, and `--runs` times with the WebGL2 synthesis (`gl`, field-gl.js,
latents in WebAssembly; checked within +-1), in turn. The player's own decode (the default:
WebAssembly, in its worker, cold) is the first line. Prints one line per run and a JSON summary
(also written with --json).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _browser import CHROMIUM_ARGS, ensure_chromium
from _cli import dappled_cmd
from test_web_field import _payload, _size

from dappled.codec.api import decode_image

WEB = Path(__file__).resolve().parents[1] / "dappled" / "stream" / "web"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stream", type=Path)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    data = args.stream.read_bytes()
    w, h = _size(data)
    ref = decode_image(data)
    names = ("field.js", "field-gl.js", "dpl.js", "field-tables.bin.gz", "field-decoder.wasm", "player.js")
    sizes = {name: (WEB / name).stat().st_size for name in names}
    proc = subprocess.Popen([*dappled_cmd(), "serve", str(args.stream.parent), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    m = re.search(r"(http://127\.0\.0\.1:\d+)/", proc.stdout.readline())
    if not m:
        raise SystemExit("dappled serve did not start")
    server = m.group(1)
    runs = []
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=ensure_chromium(), args=CHROMIUM_ARGS)
            version = browser.version
            page = browser.new_page()
            t0 = time.perf_counter()
            page.goto(f"{server}/player?src=/files/{args.stream.name}")
            done = "window.dappled && (window.dappled.state.ended || window.dappled.state.error)"
            page.wait_for_function(done, timeout=600_000)
            st = page.evaluate("window.dappled.state")
            if st["error"]:
                raise SystemExit(st["error"])
            page_ms = (time.perf_counter() - t0) * 1000
            rgb = np.frombuffer(base64.b64decode(page.evaluate("window.dappled.captureFrame(0)")), np.uint8)
            if not np.array_equal(rgb.reshape(ref.shape), ref):
                raise SystemExit("the player's image differs from the Python decoder's")
            print(f"player page ({st['synth']}): ARM+rANS {st['latentMs']:.0f} ms, "
                  f"synthesis {st['synthMs']:.0f} ms, open to image shown {page_ms:.0f} ms, "
                  f"first frame at {st['firstFrameMs']:.0f} ms")
            b64 = base64.b64encode(_payload(data)).decode()
            modes = ("js", "wasm", "gl")
            for i in range(-1, len(modes) * args.runs):  # run -1: a JavaScript decode on the page, untimed
                synth = "js" if i < 0 else modes[i % len(modes)]  # (the player decodes in its worker:
                # the page's own field.js is cold until then)
                r = page.evaluate("""async ([b64, w, h, synth]) => {
                    const f = await import('/web/field.js');
                    const { FieldSynthGL } = await import('/web/field-gl.js');
                    const tb = await f.loadTables();
                    if (!(await f.loadDecoderWasm())) throw new Error('field-decoder.wasm did not load');
                    f.exactBackend(synth === 'js' ? 'js' : 'wasm');
                    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                    const gl = synth === 'gl' ? (window.fieldGl ||= new FieldSynthGL()) : null;
                    const r = f.decodeFieldPayload(bytes, w, h, tb, gl);
                    let bin = '';
                    for (let j = 0; j < r.rgb.length; j += 0x8000)
                        bin += String.fromCharCode.apply(null, r.rgb.subarray(j, j + 0x8000));
                    return { latentMs: r.latentMs, synthMs: r.synthMs, rgb: btoa(bin) };
                }""", [b64, w, h, synth])
                got = np.frombuffer(base64.b64decode(r["rgb"]), np.uint8).reshape(ref.shape)
                diff = int(np.abs(got.astype(np.int64) - ref).max())
                if diff > (1 if synth == "gl" else 0):
                    raise SystemExit(f"run {i} ({synth}): pixels differ by {diff} from the Python decoder's")
                load = " ".join(f"{x:.2f}" for x in os.getloadavg())
                print(f"run {i}: ARM+rANS {r['latentMs']:.0f} ms, synthesis ({synth}) {r['synthMs']:.0f} ms, "
                      f"max difference {diff} (load {load})")
                if i < 0:
                    continue
                runs.append({"synth": synth, "latent_ms": r["latentMs"], "synth_ms": r["synthMs"],
                             "max_diff": diff, "differing": int((got != ref).sum()), "load": load})
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
    summary = {
        "stream": str(args.stream), "bytes": len(data), "size": f"{w}x{h}", "chromium": version,
        "player_synth": st["synth"], "player_latent_ms": st["latentMs"], "player_synth_ms": st["synthMs"],
        "player_open_to_shown_ms": page_ms,
        "median_latent_js_ms": statistics.median(r["latent_ms"] for r in runs if r["synth"] == "js"),
        "median_latent_wasm_ms": statistics.median(r["latent_ms"] for r in runs if r["synth"] == "wasm"),
        "median_synth_js_ms": statistics.median(r["synth_ms"] for r in runs if r["synth"] == "js"),
        "median_synth_wasm_ms": statistics.median(r["synth_ms"] for r in runs if r["synth"] == "wasm"),
        "median_synth_gl_ms": statistics.median(r["synth_ms"] for r in runs if r["synth"] == "gl"),
        "gl_max_diff": max(r["max_diff"] for r in runs if r["synth"] == "gl"),
        "runs": runs, "decoder_bytes": sizes,
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
