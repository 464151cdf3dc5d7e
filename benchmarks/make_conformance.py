"""Make the conformance corpus tests/conformance/ (issue 18): one small stream per registered
codec and payload version, and a manifest with the sha256 of its decoded pixels. Never run in
CI: the corpus is frozen, and tests/test_conformance.py checks that today's decoders still
produce exactly those pixels.

    .venv/bin/python benchmarks/make_conformance.py                      # all current versions
    git worktree add /tmp/v1 8cbc046~1                                   # field payload version 1
    .venv/bin/python benchmarks/make_conformance.py --field-v1-tree /tmp/v1

Every image stream codes a 48x32 crop of the bundled sample (saved as source.png, which the
classical codecs' checks compare against); the splatv stream codes a 3-frame 48x32 synthetic
clip (tests/_clips.py), the fieldv streams too (`fieldv.dpl` payload version 1, `fieldv-v2.dpl`
version 2, `fieldv-v3*.dpl` version 3, `fieldv-v4*.dpl` version 4, `fieldv-v5*.dpl` version 5,
`fieldv-v6.dpl` version 6).
Entries of versions the current code does not write (field version 1, fieldv versions 1 to 4)
are kept from the existing manifest unless --field-v1-tree points at a checkout of the code
that wrote them: that code then encodes the crop and decodes it, and its pixels are the
reference (the current decoder must reproduce them exactly).

A stream's pixel checksum is the sha256 of its decoded frames as raw RGB uint8 bytes in (H, W,
3) order, frame after frame.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "conformance"
MANIFEST = "manifest.json"
FORMAT = "dappled-conformance"
CROP = (slice(100, 132), slice(300, 348))  # 48x32 of the sample (kodim23): a parrot's eye and feathers
# video streams: (file name, codec asked for, codec the stream is written with, encode_video kwargs)
VIDEO_STREAMS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("splatv", "splat", "splatv", {"kbps": 40.0, "gop": 3, "i_iterations": 60, "i_refit_iterations": 10,
                                   "p_iterations": 4, "p_solve_iters": 2}),
    ("fieldv", "field", "fieldv", {"quality": 4, "gop": 3, "iterations": 30}),  # version 1: frozen below
    # payload version 2 (entropy-coded motion): 8-pixel blocks and cheap vectors, so that its
    # motion takes every path of the coder (neighbours' vectors, one used before, new ones)
    ("fieldv-v2", "field", "fieldv", {"quality": 4, "gop": 3, "iterations": 30, "block": 8, "mv_cost": 0.05}),
    # payload version 3 (compact layout, cubic interpolation): the same with a residual on every
    # predicted frame (types 0, 1, 2), and the defaults, whose predicted frames go without (type 3)
    ("fieldv-v3", "field", "fieldv", {"quality": 4, "gop": 3, "iterations": 30, "block": 8, "mv_cost": 0.05,
                                      "skip": 0}),
    ("fieldv-v3-skip", "field", "fieldv", {"quality": 4, "gop": 3, "iterations": 30}),
    # payload version 4 (a prediction filter on predicted frames): the same two settings
    ("fieldv-v4", "field", "fieldv", {"quality": 7, "gop": 3, "iterations": 30, "block": 8, "mv_cost": 0.05,
                                      "skip": 0}),
    ("fieldv-v4-skip", "field", "fieldv", {"quality": 4, "gop": 3, "iterations": 30}),
    # payload version 5 (the 8-tap interpolation): the same two settings
    ("fieldv-v5", "field", "fieldv", {"quality": 7, "gop": 3, "iterations": 30, "block": 8, "mv_cost": 0.05,
                                      "skip": 0}),
    ("fieldv-v5-skip", "field", "fieldv", {"quality": 4, "gop": 3, "iterations": 30}),
    # payload version 6 (transform residuals on predicted frames)
    ("fieldv-v6", "field", "fieldv", {"quality": 7, "gop": 3, "iterations": 30, "block": 8, "mv_cost": 0.05,
                                      "dct": 1}),
)
# streams of payload versions the current code no longer writes: kept from the manifest
WRITTEN_BEFORE = {"fieldv": "field video payload version 1, written before version 2 (at 5f3ca08)",
                  "fieldv-v2": "field video payload version 2, written before version 3 (at 3a35d95)",
                  "fieldv-v3": "field video payload version 3, written before version 4 (at 61b319c)",
                  "fieldv-v3-skip": "field video payload version 3, written before version 4 (at 61b319c)",
                  "fieldv-v4": "field video payload version 4, written before version 5 (at 95c301a)",
                  "fieldv-v4-skip": "field video payload version 4, written before version 5 (at 95c301a)"}
CLASSICAL = ("jpeg", "webp", "avif", "jp2", "hevc", "jxl")
# (file stem, codec, encode kwargs): the fitted codecs with short fits (a stream is a stream)
IMAGE_STREAMS: list[tuple[str, str, dict[str, Any]]] = [
    ("splat", "splat", {"iterations": 60}),
    ("rat", "rat", {"quality": 3}),
    ("rat-shallow", "rat", {"quality": 3, "decoder": "shallow"}),
    ("tokens", "tokens", {}),
    ("field-v2", "field", {"iterations": 60}),
    ("field-v2-q1", "field", {"iterations": 60, "quality": 1}),
    ("jpeg", "jpeg", {"quality": 50}),
    ("webp", "webp", {"quality": 50}),
    ("avif", "avif", {"quality": 50}),
    ("jp2", "jp2", {"bpp": 2.0}),
    ("hevc", "hevc", {"quality": 25}),
    ("jxl", "jxl", {"quality": 50}),
]
# field version 1: what 8cbc046~1 (the last commit writing it) encodes, and decodes, in a child
_V1_CHILD = """
import hashlib, json, sys
import numpy as np
from dappled.codec.api import decode_image, encode_image
from dappled.datasets import load_image
image = load_image(sys.argv[1])
data = encode_image(image, "field", quality=int(sys.argv[3]), iterations=30)
px = decode_image(data)
assert (decode_image(data) == px).all()
open(sys.argv[2], "wb").write(data)
print(json.dumps({"sha256": hashlib.sha256(np.ascontiguousarray(px).tobytes()).hexdigest()}))
"""


def pixels_sha256(frames: list[np.ndarray]) -> str:
    """sha256 of frames as raw (H, W, 3) uint8 RGB bytes, one after the other."""
    h = hashlib.sha256()
    for f in frames:
        assert f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3
        h.update(np.ascontiguousarray(f).tobytes())
    return h.hexdigest()


def payload_version(data: bytes) -> int | None:
    """The payload version byte of a Dappled codec's stream (first byte of the first FRAME
    packet's HEAD or VHED chunk; a field video frame's own parse from version 3, which has no
    chunks, the newest of its frames'); None for the classical codecs (their own bitstreams)."""
    from dappled.codec import registry
    from dappled.codec.api import parse
    from dappled.codec.chunks import unpack_chunks
    from dappled.codec.field.video.format import parse_frame
    from dappled.errors import BitstreamError

    stream = parse(data)
    frame = stream.frames()[0]
    if stream.header.codec_id == registry.get("fieldv").codec_id:  # per frame: the newest
        return max(parse_frame(f.payload).version for f in stream.frames())
    try:
        chunks = unpack_chunks(frame.payload)
    except BitstreamError:
        return None
    for tag in ("HEAD", "VHED"):
        if tag in chunks:
            return chunks[tag][0]
    return None


def weights_of(codec: str, data: bytes) -> dict[str, Any] | None:
    """The shipped weights a rat or tokens stream names (model id, byte 1 of HEAD), with the
    file's sha256: the stream names the model id only, so the corpus pins the content."""
    if codec not in ("rat", "tokens"):
        return None
    import importlib

    from dappled.codec.api import parse
    from dappled.codec.chunks import unpack_chunks

    store = importlib.import_module(f"dappled.models.{codec}.store")
    model_id = unpack_chunks(parse(data).frames()[0].payload)["HEAD"][1]
    path = store.WEIGHTS_DIR / store.MODELS[model_id]
    return {"model_id": model_id, "file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def decoder_libraries(codec: str) -> str | None:
    """Name and version of the external library that decodes a classical codec's bytes."""
    import importlib.metadata as meta

    import PIL
    from PIL import features

    if codec in ("jpeg", "webp", "avif", "jp2"):
        feature = {"jpeg": "jpg", "webp": "webp", "avif": "avif", "jp2": "jpg_2000"}[codec]
        lib = {"jpeg": "libjpeg-turbo", "webp": "libwebp", "avif": "libavif", "jp2": "OpenJPEG"}[codec]
        return f"Pillow {PIL.__version__}, {lib} {features.version(feature)}"
    if codec == "hevc":
        import av

        return f"PyAV {av.__version__}, libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}"
    if codec == "jxl":
        return f"pillow-jxl-plugin {meta.version('pillow-jxl-plugin')}"
    return None


def entry(name: str, codec: str, data: bytes, frames: list[np.ndarray], source: np.ndarray | None,
          settings: dict[str, Any]) -> dict[str, Any]:
    """One manifest entry: what the test checks, and how the stream was made."""
    from dappled.codec import registry
    from dappled.quality import psnr

    h, w = frames[0].shape[:2]
    e: dict[str, Any] = {"file": f"{name}.dpl", "codec": codec, "codec_id": registry.get(codec).codec_id,
                         "payload_version": payload_version(data), "width": w, "height": h,
                         "frames": len(frames), "bytes": len(data), "sha256": pixels_sha256(frames),
                         "settings": settings}
    if codec in CLASSICAL:
        assert source is not None
        e["check"] = "size-and-psnr"
        e["psnr"] = round(psnr(source, frames[0]), 3)
        e["decoder"] = decoder_libraries(codec)
    else:
        e["check"] = "pixels"
    weights = weights_of(codec, data)
    if weights is not None:
        e["weights"] = weights
    return e


def field_v1(tree: Path, src: Path, out: Path, quality: int, name: str) -> dict[str, Any]:
    """Encode and decode with the checkout at `tree` (the version 1 writer) in a child process."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    stream = out / f"{name}.dpl"
    res = subprocess.run([sys.executable, "-c", _V1_CHILD, str(src), str(stream), str(quality)],
                         capture_output=True, text=True, env=env, cwd=tempfile.gettempdir(), check=True)
    sha = json.loads(res.stdout.strip().splitlines()[-1])["sha256"]
    data = stream.read_bytes()
    from dappled.codec.api import parse

    h = parse(data).header
    return {"file": stream.name, "codec": "field", "codec_id": h.codec_id, "payload_version": 1,
            "width": h.width, "height": h.height, "frames": 1, "bytes": len(data), "sha256": sha,
            "check": "pixels", "settings": {"quality": quality, "iterations": 30},
            "made_by": f"dappled at {_git_rev(tree)} (encoder and reference decoder)"}


def _git_rev(tree: Path) -> str:
    res = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True)
    return res.stdout.strip() or str(tree)


def main() -> None:
    """Write the corpus and its manifest."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--field-v1-tree", type=Path, default=None,
                    help="a checkout of the last commit that wrote field payload version 1 (8cbc046~1)")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT / "tests"))
    from _clips import moving_pattern

    from dappled.codec.api import decode_image, encode_image
    from dappled.codec.video import decode_video, encode_video
    from dappled.datasets import SAMPLE_IMAGE, load_image, save_image

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    old: dict[str, dict[str, Any]] = {}
    if (out / MANIFEST).exists():
        old = {e["file"]: e for e in json.loads((out / MANIFEST).read_text())["streams"]}
    source = np.ascontiguousarray(load_image(SAMPLE_IMAGE)[CROP])
    save_image(out / "source.png", source)
    assert (load_image(out / "source.png") == source).all()
    streams: list[dict[str, Any]] = []
    for name, codec, kwargs in IMAGE_STREAMS:
        if name + ".dpl" in old and (out / f"{name}.dpl").exists():  # written once, then frozen
            streams.append(old[name + ".dpl"])
            continue
        data = encode_image(source, codec, **kwargs)
        px = decode_image(data)
        assert (decode_image(data) == px).all(), f"{codec}: decoding is not deterministic"
        (out / f"{name}.dpl").write_bytes(data)
        streams.append(entry(name, codec, data, [px], source, kwargs))
        print(f"{name}: {len(data)} bytes", file=sys.stderr)
    clip = moving_pattern(3, w=48, h=32)
    for name, codec, written, video_kwargs in VIDEO_STREAMS:
        if name + ".dpl" in old and (out / f"{name}.dpl").exists():  # written once, then frozen
            streams.append(old[name + ".dpl"])
            continue
        if name in WRITTEN_BEFORE:
            print(f"{name}: {WRITTEN_BEFORE[name]}, missing: left out", file=sys.stderr)
            continue
        data = encode_video(clip, 25, codec, **video_kwargs).data  # type: ignore[arg-type]
        frames = decode_video(data)
        assert pixels_sha256(decode_video(data)) == pixels_sha256(frames)
        (out / f"{name}.dpl").write_bytes(data)
        streams.append(entry(name, written, data, frames, None, video_kwargs))
        print(f"{name}: {len(data)} bytes", file=sys.stderr)
    for name, quality in (("field-v1", 4), ("field-v1-q1", 1)):
        if args.field_v1_tree is not None:
            streams.append(field_v1(args.field_v1_tree, out / "source.png", out, quality, name))
        elif f"{name}.dpl" in old:
            streams.append(old[f"{name}.dpl"])  # frozen: the current code cannot write version 1
        else:
            print(f"{name}: no --field-v1-tree and no earlier entry: left out", file=sys.stderr)
    doc = {"format": FORMAT, "version": 1, "pixels": "sha256 of the decoded frames as raw RGB uint8, "
           "(H, W, 3) order, frame after frame", "streams": sorted(streams, key=lambda e: e["file"])}
    (out / MANIFEST).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{out / MANIFEST}: {len(streams)} streams, {sum(e['bytes'] for e in streams)} bytes")


if __name__ == "__main__":
    main()
