"""The Pillow plugin: Image.open / Image.save of Dappled streams, with real encodes."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

import dappled.pillow
from dappled.codec import api, registry
from dappled.codec.container import StreamHeader, pack
from dappled.codec.registry import EncodeParams
from dappled.datasets import SAMPLE_IMAGE, load_image
from dappled.quality import psnr


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 48x64 crop of the sample."""
    return load_image(SAMPLE_IMAGE)[200:248, 300:364].copy()


def test_open_decodes_like_the_api(photo: np.ndarray, tmp_path) -> None:
    data = api.encode_image(photo, "jpeg", quality=80)
    path = tmp_path / "photo.dpl"
    path.write_bytes(data)
    with Image.open(path) as im:
        assert im.format == dappled.pillow.FORMAT
        assert im.size == (64, 48) and im.mode == "RGB"
        assert im.info["codec"] == "jpeg" and getattr(im, "n_frames", 1) == 1
        assert im._loaded_frame == -1  # nothing decoded before load()
        pixels = np.asarray(im)
    assert np.array_equal(pixels, api.decode_image(data))
    with Image.open(io.BytesIO(data)) as im2:  # a file object too
        assert np.array_equal(np.asarray(im2), pixels)


def test_save_and_open_round_trip(photo: np.ndarray, tmp_path) -> None:
    path = tmp_path / "photo.dpl"
    Image.fromarray(photo).save(path, codec="jpeg", quality=90)
    assert api.inspect(path.read_bytes()).codec == "jpeg"
    with Image.open(path) as im:
        back = np.asarray(im.convert("RGB"))
    assert back.shape == photo.shape
    assert psnr(photo, back) > 30
    Image.open(path).save(tmp_path / "photo.png")  # and on to another format
    assert np.array_equal(np.asarray(Image.open(tmp_path / "photo.png")), back)


def test_save_field_with_codec_options(tmp_path) -> None:
    img = load_image(SAMPLE_IMAGE)[180:204, 100:132].copy()  # 32x24
    path = tmp_path / "f.dpl"
    Image.fromarray(img).save(path, codec="field", quality=4, iterations=8)
    info = api.inspect(path.read_bytes())
    assert (info.codec, info.width, info.height) == ("field", 32, 24)
    with Image.open(path) as im:
        assert np.array_equal(np.asarray(im), api.decode_image(path.read_bytes()))


@pytest.mark.parametrize("mode", ["RGBA", "L", "P"])
def test_save_converts_other_modes_to_rgb(photo: np.ndarray, mode: str) -> None:
    src = Image.fromarray(photo).convert(mode)
    buf = io.BytesIO()
    src.save(buf, format="DAPPLED", codec="jpeg", quality=95)
    assert buf.getvalue() == api.encode_image(np.asarray(src.convert("RGB")), "jpeg", quality=95)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        assert im.mode == "RGB"


def test_default_codec_is_the_apis() -> None:
    img = load_image(SAMPLE_IMAGE)[180:204, 100:132].copy()
    cheap = registry.get(api.DEFAULT_CODEC).test_encode_kwargs()  # fewest fit iterations
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="DAPPLED", **cheap)
    assert api.inspect(buf.getvalue()).codec == api.DEFAULT_CODEC


def test_open_non_dappled_bytes_is_unidentified(tmp_path) -> None:
    path = tmp_path / "x.dpl"
    path.write_bytes(b"not a stream at all, just bytes" * 4)
    with pytest.raises(UnidentifiedImageError):
        Image.open(path)


def test_open_truncated_file_raises_oserror(photo: np.ndarray, tmp_path) -> None:
    data = api.encode_image(photo, "jpeg", quality=80)
    path = tmp_path / "t.dpl"
    path.write_bytes(data[:20])  # inside the header
    with pytest.raises(OSError, match=r"t\.dpl: broken Dappled stream"):
        Image.open(path)
    path.write_bytes(data[: len(data) // 2])  # inside the payload: found on load
    with Image.open(path) as im, pytest.raises(OSError, match="broken Dappled stream"):
        im.load()


def test_corrupt_payload_raises_oserror(photo: np.ndarray) -> None:
    data = bytearray(api.encode_image(photo, "jpeg", quality=80))
    data[60] ^= 0xFF  # a payload byte: the packet CRC no longer matches
    with Image.open(io.BytesIO(bytes(data))) as im, pytest.raises(OSError) as info:
        im.load()
    assert type(info.value) is OSError and "broken Dappled stream" in str(info.value)


def test_failed_save_leaves_no_file(photo: np.ndarray, tmp_path) -> None:
    path = tmp_path / "bad.dpl"
    with pytest.raises(ValueError, match="quality"):
        Image.fromarray(photo).save(path, codec="jpeg", quality=1000)
    assert not path.exists()
    with pytest.raises(ValueError, match="unknown codec"):
        Image.fromarray(photo).save(path, codec="nope")
    assert list(tmp_path.iterdir()) == []


def test_atomic_save_keeps_the_old_file_on_failure(photo: np.ndarray, tmp_path) -> None:
    path = tmp_path / "keep.dpl"
    dappled.pillow.save(Image.fromarray(photo), path, codec="jpeg", quality=50)
    before = path.read_bytes()
    with pytest.raises(ValueError):
        dappled.pillow.save(Image.fromarray(photo), path, codec="jpeg", quality=0)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.dpl"]


def _video(frames: list[np.ndarray], codec: str = "jpeg") -> tuple[bytes, list[bytes]]:
    """A real intra-coded video stream of `frames` at 25 fps, through the codec's stream
    encoder, and each of its frames as a one-image stream."""
    impl = registry.get(codec)
    h, w = frames[0].shape[:2]
    enc = impl.make_encoder(w, h, 25.0, EncodeParams(quality=90))
    packets = [enc.encode(f) for f in frames]
    alone = [pack(StreamHeader(impl.codec_id, w, h), [replace(p, frame=0)]) for p in packets]
    return pack(StreamHeader(impl.codec_id, w, h, len(frames), 25, 1), packets), alone


def test_video_stream_opens_on_its_first_frame_and_seeks() -> None:
    from _clips import moving_pattern

    frames = moving_pattern(3)
    video, alone = _video(frames)
    with Image.open(io.BytesIO(video)) as im:
        assert im.n_frames == 3 and im.is_animated and im.info["duration"] == 40.0
        got = [np.asarray(im).copy()]
        for k in (1, 2):
            im.seek(k)
            assert im.tell() == k
            got.append(np.asarray(im).copy())
        im.seek(0)  # backwards: decoded again from the start
        assert np.array_equal(np.asarray(im), got[0])
        with pytest.raises(EOFError):
            im.seek(3)
    for one, g in zip(alone, got, strict=True):
        assert np.array_equal(g, api.decode_image(one))
    assert not np.array_equal(got[0], got[2])  # each seek decoded its own frame
