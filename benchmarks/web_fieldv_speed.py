"""Field video in the browser (issue 19): the player's frame rate on a field video stream in
headless Chromium, served by `dappled serve`, and the size of the browser decoder.

    PYTHONPATH=. .venv/bin/python benchmarks/web_fieldv_speed.py runs/issue19/bikes-fieldv.dpl \
        --json runs/issue19/web_fieldv.json

Plays the stream in the player page once per mode (--repeat: more plays): `wasm` (the default:
the decoder worker, exact synthesis in WebAssembly, over a helper worker per core but one; on a
2-core machine none: the worker decodes alone), `js` (the same with the exact JavaScript
synthesis: `?synth=js`), `js2` (two helper workers: `?threads=2`), `gl`
(the worker with the WebGL2 synthesis: `?synth=gl`) and `page` (the exact decoder on the page's
own thread: `?worker=0`). For each: frames decoded, shown and
dropped, stalls (and how many waited for the decoder), the rate on the page (`measuredFps`, the
last 30 shown frames) and over the whole play (`playFps`), time to first frame (from the player
script's start, and from `page.goto`), and the decoder's own time per frame (ARM + rANS and
synthesis). Every shown frame of the exact modes is then captured and checked equal to the Python
decoder's (tolerance 0); `gl` frames are checked within +-(1 + position in the group).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _browser import CHROMIUM_ARGS, ensure_chromium
from _cli import dappled_cmd

from dappled.codec import registry
from dappled.codec.container import unpack
from dappled.codec.video import decode_video

WEB = Path(__file__).resolve().parents[1] / "dappled" / "stream" / "web"
MODES = {"wasm": "", "js": "&synth=js", "js2": "&threads=2", "gl": "&synth=gl", "page": "&worker=0"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stream", type=Path)
    ap.add_argument("--modes", default="wasm,js,js2,gl,page")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--repeat", type=int, default=1, help="plays per mode")
    args = ap.parse_args()
    data = args.stream.read_bytes()
    c = unpack(data, registry.ids())
    keys = [p.keyframe for p in c.frames()]
    ref = decode_video(data)
    names = ("fieldv.js", "fieldv-worker.js", "fieldv-residual-worker.js", "field.js", "field-gl.js",
             "dpl.js", "field-tables.bin.gz", "field-decoder.wasm", "player.js")
    sizes = {name: (WEB / name).stat().st_size for name in names}
    proc = subprocess.Popen([*dappled_cmd(), "serve", str(args.stream.parent), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    m = re.search(r"(http://127\.0\.0\.1:\d+)/", proc.stdout.readline())
    if not m:
        raise SystemExit("dappled serve did not start")
    server = m.group(1)
    results = {}
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=ensure_chromium(), args=CHROMIUM_ARGS)
            version = browser.version
            for mode in [m for _ in range(args.repeat) for m in args.modes.split(",")]:
                page = browser.new_page()
                t0 = time.perf_counter()
                page.goto(f"{server}/player?src=/files/{args.stream.name}{MODES[mode]}")
                page.wait_for_function("window.dappled && window.dappled.state.shown > 0", timeout=600_000,
                                       polling=10)
                goto_first_ms = (time.perf_counter() - t0) * 1000
                page.wait_for_function("window.dappled.state.ended || window.dappled.state.error",
                                       timeout=1_200_000)
                st = page.evaluate("window.dappled.state")
                if st["error"]:
                    raise SystemExit(f"{mode}: {st['error']}")
                load = " ".join(f"{x:.2f}" for x in os.getloadavg())
                worst = pos = 0
                for i, r in enumerate(ref):
                    got = np.frombuffer(base64.b64decode(page.evaluate(f"window.dappled.captureFrame({i})")),
                                        np.uint8).reshape(r.shape)
                    diff = int(np.abs(got.astype(np.int64) - r).max())
                    worst = max(worst, diff)
                    pos = 0 if keys[i] else pos + 1
                    if diff > (pos + 1 if st["synth"] == "gl" else 0):
                        raise SystemExit(f"{mode}: frame {i} differs by {diff} from the Python decoder's")
                res = {k: st[k] for k in ("synth", "worker", "threads", "frameCount", "fps", "decoded",
                                          "shown",
                                          "dropped", "stalls", "decodeStalls", "measuredFps", "playFps",
                                          "firstFrameMs", "decodeMs", "decoderReadyMs", "firstDecodeMs",
                                          "headerMs", "firstReadyMs",
                                          "note")}
                res["decode_ms_per_frame"] = st["decodeMs"] / max(1, st["decoded"])
                res["decoder_fps"] = 1000 / res["decode_ms_per_frame"]
                res["latent_ms_per_frame"] = st["latentMsSum"] / max(1, st["decoded"])
                res["synth_ms_per_frame"] = st["synthMsSum"] / max(1, st["decoded"])
                # per frame, where the player keeps them (frame, type, decode, latents, synthesis):
                # the predicted frames' medians, past the JIT's warm-up, and the intra frames'
                times = st.get("decodeTimes") or []
                for tag, intra in (("p", False), ("i", True)):
                    sel = [t for t in times if (t[1] == 0) == intra]
                    if sel:
                        res[f"{tag}_frame_median_ms"] = [float(np.median([t[k] for t in sel]))
                                                         for k in (2, 3, 4)]
                res["goto_to_first_frame_ms"] = goto_first_ms
                res["max_diff"] = worst
                res["load"] = load
                results.setdefault(mode, []).append(res)
                print(f"{mode}: shown {st['shown']}/{st['frameCount']}, dropped {st['dropped']}, "
                      f"stalls {st['stalls']} ({st['decodeStalls']} on the decoder), page rate "
                      f"{st['measuredFps']:.2f} fps (whole play {st['playFps']:.2f}), first frame "
                      f"{st['firstFrameMs']:.0f} ms ({goto_first_ms:.0f} from goto; decoder ready at "
                      f"{st['decoderReadyMs']:.0f}), decode "
                      f"{res['decode_ms_per_frame']:.0f} ms/frame ({res['decoder_fps']:.2f} fps; ARM+rANS "
                      f"{res['latent_ms_per_frame']:.0f}, synthesis {res['synth_ms_per_frame']:.0f}), "
                      f"max difference {worst} (load {load})")
                page.close()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
    summary = {"stream": str(args.stream), "bytes": len(data), "size": f"{c.header.width}x{c.header.height}",
               "frames": len(ref), "chromium": version,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "modes": results,
               "decoder_bytes": sizes}
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
