"""One contract, checked on every registered codec: a codec joins these tests by registering
(``registry._TABLE`` / ``registry.register``) and, if its default encode is slow, by giving
cheap options in ``Codec.test_encode_kwargs``.

What every codec promises: it imports and is found by name and by id; an encode decodes to an
(H, W, 3) uint8 image of the input's size, also for 1x1, 3x5 and odd sizes; the same bytes give
the same pixels in another process; a truncated stream or a corrupted payload raises the
bitstream error (or, for a corruption the codec cannot detect, still decodes to a valid image);
grayscale, RGBA and 16-bit image files code like RGB ones.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _streams import forge, frame_payload
from PIL import Image

from dappled.codec import api, registry
from dappled.codec.container import HEADER_SIZE, PACKET_HEADER_SIZE
from dappled.datasets import SAMPLE_IMAGE, load_image
from dappled.errors import BitstreamError

CODECS = registry.names(streams=True)
SAMPLE = load_image(SAMPLE_IMAGE)


def _encode(name: str, image: np.ndarray) -> bytes:
    return api.encode_image(image, name, **registry.get(name).test_encode_kwargs())


def _crop(h: int, w: int, y: int = 180, x: int = 300) -> np.ndarray:
    return np.ascontiguousarray(SAMPLE[y : y + h, x : x + w])


@pytest.fixture(scope="module")
def streams() -> dict[str, bytes]:
    """One 24x40 stream per codec (the base of the other checks)."""
    return {name: _encode(name, _crop(24, 40)) for name in CODECS}


@pytest.fixture(scope="module")
def other_process(streams: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every stream decoded in one fresh process; sha256 of the pixels per codec."""
    folder = tmp_path_factory.mktemp("contract")
    for name, data in streams.items():
        (folder / f"{name}.dpl").write_bytes(data)
    script = (
        "import hashlib, json, sys\nfrom pathlib import Path\nfrom dappled.codec import api\n"
        "out = {}\nfor p in sorted(Path(sys.argv[1]).glob('*.dpl')):\n"
        "    out[p.stem] = hashlib.sha256(api.decode_image(p.read_bytes()).tobytes()).hexdigest()\n"
        "print(json.dumps(out))\n"
    )
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True,
                          cwd=root, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", CODECS)
def test_registered_and_importable(name: str) -> None:
    codec = registry.get(name)
    assert codec.name == name
    assert registry.name_of(codec.codec_id) == name
    assert registry.by_id(codec.codec_id) is codec
    assert isinstance(codec.test_encode_kwargs(), dict)


@pytest.mark.parametrize("name", CODECS)
def test_round_trip_shape_and_dtype(name: str, streams: dict[str, bytes]) -> None:
    out = api.decode_image(streams[name])
    assert out.shape == (24, 40, 3) and out.dtype == np.uint8
    err = np.abs(out.astype(np.int32) - _crop(24, 40).astype(np.int32)).mean()
    assert err < 40, f"{name}: mean error {err:.1f} is not a reconstruction"
    assert api.inspect(streams[name]).codec == name


@pytest.mark.parametrize("name", CODECS)
def test_same_bytes_same_pixels_in_another_process(name: str, streams: dict[str, bytes],
                                                   other_process: dict[str, str]) -> None:
    import hashlib

    here = hashlib.sha256(api.decode_image(streams[name]).tobytes()).hexdigest()
    again = hashlib.sha256(api.decode_image(streams[name]).tobytes()).hexdigest()
    assert here == again == other_process[name]


@pytest.mark.parametrize("name", CODECS)
def test_truncated_streams_raise_bitstream_error(name: str, streams: dict[str, bytes]) -> None:
    data = streams[name]
    cuts = sorted({0, 3, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + PACKET_HEADER_SIZE - 1,
                   HEADER_SIZE + PACKET_HEADER_SIZE + 1, len(data) // 2, len(data) - 17, len(data) - 1})
    for cut in cuts:
        with pytest.raises(BitstreamError):
            api.decode_image(data[:cut])


@pytest.mark.parametrize("name", CODECS)
def test_corrupted_payloads_raise_bitstream_error_or_decode(name: str, streams: dict[str, bytes]) -> None:
    data = streams[name]
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    with pytest.raises(BitstreamError):  # the container's CRC catches a flipped bit
        api.decode_image(bytes(flipped))
    payload, _ = frame_payload(data)
    rng = np.random.default_rng(10)
    raised = 0
    for _ in range(12):  # bit flips past the CRC (fixed up): only the codec's own checks remain
        bad = bytearray(payload)
        for pos in rng.integers(0, len(bad), size=3):
            bad[pos] ^= 1 << int(rng.integers(0, 8))
        try:
            out = api.decode_image(forge(data, bytes(bad)))
        except BitstreamError:
            raised += 1
            continue
        assert out.shape == (24, 40, 3) and out.dtype == np.uint8
    for garbage in (b"", b"\x00" * 7, bytes(rng.integers(0, 256, 200, dtype=np.uint8))):
        try:
            out = api.decode_image(forge(data, garbage))
        except BitstreamError:
            raised += 1
        else:
            assert out.shape == (24, 40, 3)
    assert raised > 0


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (5, 3), (17, 9)])
@pytest.mark.parametrize("name", CODECS)
def test_tiny_and_odd_sizes(name: str, size: tuple[int, int]) -> None:
    image = _crop(*size)
    out = api.decode_image(_encode(name, image))
    assert out.shape == (*size, 3) and out.dtype == np.uint8


@pytest.mark.slow
@pytest.mark.parametrize("name", CODECS)
def test_large_odd_size(name: str) -> None:
    h, w = 513, 770  # both sides odd, over every tile and block size
    image = np.ascontiguousarray(np.pad(SAMPLE, ((0, 1), (0, 2), (0, 0)), mode="reflect")[:h, :w])
    out = api.decode_image(_encode(name, image))
    assert out.shape == (h, w, 3) and out.dtype == np.uint8


def _image_file(folder: Path, mode: str) -> Path:
    """A 24x40 PNG in `mode` made from the sample crop."""
    rgb = _crop(24, 40)
    if mode == "L":
        im = Image.fromarray(rgb).convert("L")
    elif mode == "RGBA":
        im = Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)]), "RGBA")
    else:  # 16-bit grayscale: luma scaled to 0..65535
        luma = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.uint16)
        im = Image.fromarray((luma * 257).astype(np.uint16))
    path = folder / f"{mode.replace(';', '')}.png"
    im.save(path)
    return path


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16"])
def test_image_modes_load_as_rgb8(mode: str, tmp_path: Path) -> None:
    loaded = load_image(_image_file(tmp_path, mode))
    assert loaded.shape == (24, 40, 3) and loaded.dtype == np.uint8
    expect = np.asarray(Image.fromarray(_crop(24, 40)).convert("L")) if mode != "RGBA" else _crop(24, 40)
    if mode != "RGBA":
        expect = np.repeat(expect[:, :, None], 3, axis=2)
    assert np.abs(loaded.astype(int) - expect.astype(int)).max() <= 1


def test_16_bit_gradient_keeps_its_range(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (4, 1))
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)
    loaded = load_image(path)[:, :, 0]
    assert (loaded == 255).mean() < 0.01
    assert loaded[0, 0] == 0 and loaded[0, -1] == 255 and abs(int(loaded[0, 128]) - 128) <= 1


@pytest.mark.parametrize("name", CODECS)
def test_grayscale_rgba_16bit_files_encode(name: str, tmp_path: Path) -> None:
    for mode in ("L", "RGBA", "I;16"):
        src = _image_file(tmp_path, mode)
        dst = tmp_path / f"{name}-{mode.replace(';', '')}.dpl"
        kwargs = registry.get(name).test_encode_kwargs()
        rate = {k: kwargs.pop(k) for k in ("quality", "bpp") if k in kwargs}
        api.encode_file(src, dst, name, **rate, options=kwargs)
        out = api.decode_image(dst.read_bytes())
        assert out.shape == (24, 40, 3) and out.dtype == np.uint8


# ---------------------------------------------------------------- video through the stream objects


@pytest.fixture(scope="module")
def clips() -> dict[str, bytes]:
    """A 3-frame 24x40 clip coded by every codec's video form (intra-only for image codecs)."""
    from dappled.codec.video import encode_video, video_codec

    frames = [_crop(24, 40, 180 + 2 * t, 300 + 3 * t) for t in range(3)]
    out = {}
    for name in CODECS:
        impl = video_codec(name)
        rate = {"kbps": 6.0 * 24 * 40 * 25 / 1000} if impl.supports_bpp else {}  # 6 bpp: room for splatv
        out[name] = encode_video(frames, 25, name, gop=2, **rate, **impl.test_encode_kwargs()).data
    return out


@pytest.mark.parametrize("name", CODECS)
def test_every_codec_codes_a_video(name: str, clips: dict[str, bytes]) -> None:
    import io

    from dappled.codec.video import VideoReader, decode_video, video_codec

    data = clips[name]
    assert api.parse(data).header.codec_id == video_codec(name).codec_id
    frames = decode_video(data)
    assert len(frames) == 3 and all(f.shape == (24, 40, 3) and f.dtype == np.uint8 for f in frames)
    with VideoReader(io.BytesIO(data)) as reader:
        assert np.array_equal(reader.frame(2), frames[2])  # a seek decodes the same pixels
    with pytest.raises(BitstreamError):
        decode_video(data[: len(data) - 40])


@pytest.mark.parametrize("name", ["jpeg", "splat"])
def test_the_player_plays_any_codec(name: str, clips: dict[str, bytes], tmp_path: Path) -> None:
    import hashlib

    from dappled.codec.video import decode_video
    from dappled.stream.player import play
    from dappled.stream.source import open_source

    path = tmp_path / "clip.dpl"
    path.write_bytes(clips[name])
    src = open_source(str(path))
    try:
        stats = play(src, headless=True, checksums=True)
    finally:
        src.close()
    assert stats.error is None and stats.decoded == 3
    expect = [hashlib.sha256(f.tobytes()).hexdigest() for f in decode_video(clips[name])]
    assert [h for _, h in stats.checksums] == expect
