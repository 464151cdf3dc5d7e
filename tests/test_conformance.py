"""The conformance corpus (tests/conformance/, made by benchmarks/make_conformance.py): every
stream, of every registered codec and payload version, still decodes, and Dappled's own codecs
to exactly the pixels recorded when it was made (issue 18). See tests/conformance/README.md."""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dappled.codec import registry
from dappled.codec.api import decode_image, parse
from dappled.codec.chunks import unpack_chunks
from dappled.codec.video import decode_video
from dappled.datasets import load_image
from dappled.quality import psnr

CORPUS = Path(__file__).parent / "conformance"
DOC = json.loads((CORPUS / "manifest.json").read_text())
STREAMS: list[dict[str, Any]] = DOC["streams"]
PSNR_SLACK_DB = 0.5  # a classical decoder of another library version may round differently


def _pixels_sha256(frames: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for f in frames:
        h.update(np.ascontiguousarray(f).tobytes())
    return h.hexdigest()


def test_the_corpus_covers_every_codec_and_payload_version() -> None:
    assert DOC["format"] == "dappled-conformance"
    assert {e["codec"] for e in STREAMS} == set(registry.names(streams=True))
    from dappled.codec.field import format as field

    assert {e["payload_version"] for e in STREAMS if e["codec"] == "field"} == set(field.READ_VERSIONS)
    from dappled.codec.field.video import format as fieldv

    assert {e["payload_version"] for e in STREAMS if e["codec"] == "fieldv"} == set(fieldv.READ_VERSIONS)
    for e in STREAMS:
        assert (CORPUS / e["file"]).stat().st_size == e["bytes"] <= 4096, e["file"]


@pytest.mark.parametrize("e", STREAMS, ids=[e["file"] for e in STREAMS])
def test_stream_decodes_as_recorded(e: dict[str, Any]) -> None:
    data = (CORPUS / e["file"]).read_bytes()
    container = parse(data)
    h = container.header
    assert (registry.name_of(h.codec_id), h.width, h.height, h.frame_count) == \
        (e["codec"], e["width"], e["height"], e["frames"])
    if e["payload_version"] is not None and e["codec"] == "fieldv":  # its own parse (version 3: no chunks)
        from dappled.codec.field.video.format import parse_frame

        assert max(parse_frame(f.payload).version for f in container.frames()) == e["payload_version"]
    elif e["payload_version"] is not None:  # Dappled's codecs: the version byte the entry is for
        chunks = unpack_chunks(container.frames()[0].payload)
        head = chunks.get("HEAD", chunks.get("VHED"))
        assert head is not None and head[0] == e["payload_version"]
    if "weights" in e:  # the stream names its weights by model id only: pin what that id means
        w = e["weights"]
        store = importlib.import_module(f"dappled.models.{e['codec']}.store")
        assert unpack_chunks(container.frames()[0].payload)["HEAD"][1] == w["model_id"]
        assert store.MODELS[w["model_id"]] == w["file"]
        shipped = hashlib.sha256((store.WEIGHTS_DIR / w["file"]).read_bytes()).hexdigest()
        assert shipped == w["sha256"], (
            f"{w['file']} (model id {w['model_id']}) is not the file this corpus was made with: "
            "streams name weights by id, so new weights need a new id")
    frames = decode_video(data) if e["frames"] > 1 or e["codec"] == "splatv" else [decode_image(data)]
    assert [f.shape for f in frames] == [(e["height"], e["width"], 3)] * e["frames"]
    assert all(f.dtype == np.uint8 for f in frames)
    if e["check"] == "pixels":
        assert _pixels_sha256(frames) == e["sha256"]
    else:  # classical: decoded by an external library, whose rounding may change between versions
        assert e["check"] == "size-and-psnr"
        source = load_image(CORPUS / "source.png")
        assert psnr(source, frames[0]) >= e["psnr"] - PSNR_SLACK_DB
