"""Issue 18's decode-budget streams: crafted field streams that once took tens of seconds and
gigabytes to decode (or to `dappled info`), written to a folder, each then decoded (or refused)
by the CLI under `/usr/bin/time -v` for its time and peak memory.

    python benchmarks/decode_budget.py OUT_DIR            # craft the streams, then measure
    python benchmarks/decode_budget.py OUT_DIR --craft    # craft only

Crafting packs payloads directly (dappled/codec/field/format.py pack_payload and the container
writer): no fit. Every latent is 1 and the ARM's output bias predicts 1 at the smallest scale, so
the latents cost next to nothing and every context is non-zero (no all-zero shortcut: the full
ARM runs on every latent). The refused architectures carry the latents of the "low" preset:
they are refused at the payload's header, before the latents are read.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from dappled.codec.chunks import pack_chunks, unpack_chunks
from dappled.codec.container import KEYFRAME, ColorSpace, Packet, PacketType, StreamHeader, pack
from dappled.codec.field.format import pack_payload
from dappled.codec.registry import get
from dappled.entropy import encode_symbols
from dappled.models.field.integer import QuantNet, QuantTensor, arm_layer_count, encode_latents, tensor_shapes
from dappled.models.field.layout import PRESETS, Arch, grids

LARGEST_ARM = Arch(ctx=16, arm_hidden=64, arm_layers=2, synth_hidden=8, res_hidden=2)
WIDEST_SYNTHESIS = Arch(ctx=8, arm_hidden=8, arm_layers=1, synth_hidden=64, res_hidden=32)


def crafted_net(arch: Arch, n_grids: int) -> QuantNet:
    """Zero weights; hidden biases positive (every ReLU on); the output bias predicts latent 1 at
    the smallest scale; the synthesis mixes every grid a little."""
    shapes = tensor_shapes(arch, n_grids)
    ts = [QuantTensor(np.zeros(s, dtype=np.int64), 8) for s in shapes]
    k = arm_layer_count(arch)
    for i in range(1, k - 1, 2):  # hidden biases
        ts[i] = QuantTensor(np.full(shapes[i], 100, dtype=np.int64), 8)
    bo = np.zeros(shapes[k - 1], dtype=np.int64)
    bo[:, 0], bo[:, 1] = 256, -4096  # mu = 1, ln b far below the smallest scale (k = 8: value/256)
    ts[k - 1] = QuantTensor(bo, 8)
    ts[k] = QuantTensor(np.ones(shapes[k], dtype=np.int64), 8)  # synthesis first layer
    ts[k + 2] = QuantTensor(np.ones(shapes[k + 2], dtype=np.int64), 8)
    return QuantNet(arch, ts[:k], ts[k:], 0, 0)


def field_stream(arch: Arch, size: int, latent_arch: Arch | None = None) -> bytes:
    gs = grids(size, size)
    lat_net = crafted_net(latent_arch or arch, len(gs))
    coded = encode_latents([np.ones((g.height, g.width), dtype=np.int64) for g in gs], gs, lat_net)
    payload = pack_payload(crafted_net(arch, len(gs)), coded.words, coded.excess)
    header = StreamHeader(get("field").codec_id, size, size, 1, 0, 1, ColorSpace.RGB)
    return pack(header, [Packet(PacketType.FRAME, payload, 0, KEYFRAME)])


def escape_bomb(size: int = 4096) -> bytes:
    """A small legitimate stream whose header claims every latent escaped (33.5 M at 4096x4096),
    in an ESC chunk of a few bytes (one repeated value: the categorical coder's shortest form)."""
    data = bytearray(field_stream(PRESETS["low"], size))
    from dappled.codec.container import unpack

    c = unpack(bytes(data))
    chunks = unpack_chunks(c.frames()[0].payload)
    head = bytearray(chunks["HEAD"])
    n = sum(g.size for g in grids(size, size))  # every latent escaped
    head[8:12] = n.to_bytes(4, "little")  # the escape count (after version, arch, shift, ladder)
    chunks["HEAD"] = bytes(head)
    chunks["ESC "] = encode_symbols(np.ones(n, dtype=np.int64))
    payload = pack_chunks(chunks)
    return pack(c.header, [Packet(PacketType.FRAME, payload, 0, KEYFRAME)])


STREAMS = {
    "field-4096-largest-arm": lambda: field_stream(LARGEST_ARM, 4096, PRESETS["low"]),
    "field-2048-widest-synthesis": lambda: field_stream(WIDEST_SYNTHESIS, 2048, PRESETS["low"]),
    "field-4096-widest-synthesis": lambda: field_stream(WIDEST_SYNTHESIS, 4096, PRESETS["low"]),
    "field-4096-default-preset": lambda: field_stream(PRESETS["low"], 4096),
    "field-4096-escape-bomb": escape_bomb,
}


def measure(cmd: list[str]) -> tuple[int, float, float, str]:
    """(exit status, seconds, peak RSS GB, last stderr line) of a command under /usr/bin/time -v."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    dt = time.perf_counter() - t0
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("dappled:")]
    return p.returncode, dt, rss * 1024 / 1e9, lines[-1] if lines else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--craft", action="store_true", help="write the streams only")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, make in STREAMS.items():
        path = args.out / f"{name}.dpl"
        if not path.exists():
            path.write_bytes(make())
    if args.craft:
        return
    dappled = [sys.executable, "-m", "dappled"]
    print("| stream | bytes | command | exit | seconds | peak RSS (GB) | message |")
    print("|---|---|---|---|---|---|---|")
    for name in STREAMS:
        path = args.out / f"{name}.dpl"
        for what, cmd in (("info", [*dappled, "info", str(path)]),
                          ("decode", [*dappled, "decode", str(path), "-o", str(args.out / f"{name}.png")])):
            code, dt, gb, msg = measure(cmd)
            print(f"| {name} | {path.stat().st_size} | {what} | {code} | {dt:.1f} | {gb:.2f} | {msg} |",
                  flush=True)


if __name__ == "__main__":
    main()
