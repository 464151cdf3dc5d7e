"""Classical baselines (jpeg, webp, avif, jp2, hevc, jxl): round trips, rate control, typed errors."""

from __future__ import annotations

import numpy as np
import pytest

from dappled.codec import registry
from dappled.codec.api import decode_image, encode_image, inspect, parse
from dappled.codec.classical.image import ClassicalCodec, rgb_to_ycbcr, ycbcr_to_rgb
from dappled.codec.container import Packet, PacketType, StreamHeader
from dappled.codec.registry import Codec, EncodeParams
from dappled.datasets import SAMPLE_IMAGE, load_image
from dappled.errors import BitstreamError, OptionError
from dappled.eval.metrics import psnr

BASELINES = ["jpeg", "webp", "avif", "jp2", "hevc", "jxl"]
# (low, high) settings per codec, and the magic bytes that start the codec's own file format
SETTINGS = {
    "jpeg": ({"quality": 15}, {"quality": 80}),
    "webp": ({"quality": 15}, {"quality": 80}),
    "avif": ({"quality": 30}, {"quality": 70}),
    "jp2": ({"bpp": 0.3}, {"bpp": 1.5}),
    "hevc": ({"quality": 12}, {"quality": 30}),
    "jxl": ({"quality": 15}, {"quality": 80}),
}
MAGIC = {
    "jpeg": lambda b: b[:3] == b"\xff\xd8\xff",
    "webp": lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP",
    "avif": lambda b: b[4:12] == b"ftypavif",
    "jp2": lambda b: b[:4] == b"\xff\x4f\xff\x51",  # SOC + SIZ of a raw J2K codestream
    "hevc": lambda b: b[:4] == b"\x00\x00\x00\x01" and (b[4] >> 1) & 0x3F == 32,  # VPS NAL
    "jxl": lambda b: b[:2] == b"\xff\x0a",  # a bare JPEG XL codestream
}


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.ascontiguousarray(load_image(SAMPLE_IMAGE)[96:224, 200:376])  # 176x128, textured


def test_registry_ids() -> None:
    for name, cid in zip(BASELINES, range(16, 22), strict=True):
        codec = registry.get(name)
        assert codec.codec_id == cid and registry.name_of(cid) == name
        assert isinstance(codec, ClassicalCodec)


@pytest.mark.parametrize("name", BASELINES)
def test_round_trip_and_rate_ordering(name: str, image: np.ndarray) -> None:
    low, high = SETTINGS[name]
    out = []
    for kwargs in (low, high):
        data = encode_image(image, name, **kwargs)
        decoded = decode_image(data)
        assert decoded.shape == image.shape and decoded.dtype == np.uint8
        payload = parse(data).frames()[0].payload
        assert MAGIC[name](payload), f"{name} payload is not a real {name} byte string"
        assert len(data) == len(payload) + 64  # 32 header + 16 packet header + 16 END packet
        info = inspect(data)
        assert info.codec == name and info.bytes == len(data)
        out.append((len(data), psnr(image, decoded)))
    (bytes_lo, psnr_lo), (bytes_hi, psnr_hi) = out
    assert 22 < psnr_lo < psnr_hi < 60
    assert bytes_lo < bytes_hi


@pytest.mark.parametrize("name", BASELINES)
def test_deterministic(name: str, image: np.ndarray) -> None:
    kwargs = SETTINGS[name][0]
    assert encode_image(image, name, **kwargs) == encode_image(image, name, **kwargs)


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("shape", [(1, 1), (9, 2), (17, 33)])
def test_odd_and_tiny_sizes(name: str, shape: tuple[int, int], image: np.ndarray) -> None:
    crop = np.ascontiguousarray(image[: shape[0], : shape[1]])
    decoded = decode_image(encode_image(crop, name, **SETTINGS[name][1]))
    assert decoded.shape == crop.shape
    assert psnr(crop, decoded) > 25


def _header(codec: Codec, w: int, h: int) -> StreamHeader:
    return StreamHeader(codec.codec_id, w, h)


@pytest.mark.parametrize("name", BASELINES)
def test_corrupted_payload_is_a_bitstream_error(name: str, image: np.ndarray) -> None:
    codec = registry.get(name)
    payload = codec.encode_image(image, EncodeParams(**SETTINGS[name][0]))[0].payload
    h, w = image.shape[:2]
    rng = np.random.default_rng(1)
    bad = {
        "header only": payload[:12],
        "empty": b"",
        "garbage": rng.integers(0, 256, len(payload), dtype=np.uint8).tobytes(),
    }
    if name != "hevc":  # FFmpeg conceals a truncated HEVC slice; the container CRC catches it
        bad["truncated"] = payload[: len(payload) // 2]
    for what, data in bad.items():
        with pytest.raises(BitstreamError):
            codec.decode_image(_header(codec, w, h), [Packet(PacketType.FRAME, data, 0, 1)])
            pytest.fail(f"{what} payload decoded")
    # the codec's bytes are fine but disagree with the container header about the size
    with pytest.raises(BitstreamError, match="header"):
        codec.decode_image(_header(codec, w + 1, h), [Packet(PacketType.FRAME, payload, 0, 1)])
    with pytest.raises(BitstreamError, match="header"):
        codec.decode_image(_header(codec, 16000, 16000), [Packet(PacketType.FRAME, payload, 0, 1)])
    # two frame packets
    with pytest.raises(BitstreamError):
        codec.decode_image(_header(codec, w, h), [Packet(PacketType.FRAME, payload, 0, 1)] * 2)


@pytest.mark.parametrize("name", BASELINES)
def test_flipped_byte_in_container_is_caught(name: str, image: np.ndarray) -> None:
    data = bytearray(encode_image(image, name, **SETTINGS[name][0]))
    data[len(data) // 2] ^= 0x10  # inside the payload: the packet CRC catches what the codec cannot
    with pytest.raises(BitstreamError):
        decode_image(bytes(data))


def test_options(image: np.ndarray) -> None:
    a = encode_image(image, "jpeg", quality=50)
    b = encode_image(image, "jpeg", quality=50, subsampling="444")
    assert len(b) > len(a)
    assert psnr(image, decode_image(b)) > psnr(image, decode_image(a))
    assert encode_image(image, "jpeg", quality=50, subsampling=444) == b  # numbers work as well
    with pytest.raises(OptionError, match="subsampling"):
        encode_image(image, "jpeg", quality=50, subsampling="411")
    with pytest.raises(OptionError, match="no option"):
        encode_image(image, "webp", quality=50, speed="3")
    with pytest.raises(OptionError):
        encode_image(image, "jpeg", quality=0)
    with pytest.raises(OptionError):
        encode_image(image, "hevc", quality=52)
    with pytest.raises(OptionError, match="bpp"):
        encode_image(image, "jpeg", bpp=0.5)


def test_jp2_rate_target(image: np.ndarray) -> None:
    for target in (0.5, 1.0, 2.0):
        data = encode_image(image, "jp2", bpp=target)
        bpp = 8 * len(data) / image.shape[0] / image.shape[1]
        assert bpp == pytest.approx(target, rel=0.15)
    # --quality q is --bpp q/25
    assert encode_image(image, "jp2", quality=25) == encode_image(image, "jp2", bpp=1.0)


def test_hevc_is_quiet(capfd: pytest.CaptureFixture[str], image: np.ndarray) -> None:
    decode_image(encode_image(image, "hevc", quality=20))
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_ycbcr_round_trip() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    back = ycbcr_to_rgb(rgb_to_ycbcr(rgb))
    assert np.abs(back.astype(int) - rgb.astype(int)).max() <= 2


@pytest.mark.parametrize("name", BASELINES)
def test_rd_points(name: str) -> None:
    codec = registry.get(name)
    pts = codec.rd_points(6)
    assert len(pts) == 6
    for p in pts:
        codec.check_params(EncodeParams(quality=p.get("quality"), bpp=p.get("bpp")))
    key = "bpp" if "bpp" in pts[0] else "quality"
    values = [p[key] for p in pts]
    assert values == sorted(values) and len(set(values)) == 6
    assert len(codec.rd_points(1)) == 1
    with pytest.raises(OptionError):
        codec.rd_points(0)


def test_rd_points_default_method() -> None:
    class Preset(Codec):  # the Codec default, without any codec behind it
        name, codec_id, quality_range = "preset", 250, (1, 8)

        def encode_image(self, image: np.ndarray, params: EncodeParams) -> list[Packet]:
            raise NotImplementedError

        def decode_image(self, header: StreamHeader, packets: list[Packet],
                         device: str = "cpu") -> np.ndarray:
            raise NotImplementedError

    class Rate(Preset):
        supports_bpp = True

    assert Preset().rd_points(4) == [{"quality": q} for q in (1, 3, 6, 8)]
    assert Rate().rd_points(3) == [{"bpp": 0.43}, {"bpp": 0.72}, {"bpp": 1.0}]
    assert [p["bpp"] for p in Rate().rd_points(5)] == [0.25, 0.43, 0.72, 1.0, 1.5]
    many = Rate().rd_points(20)
    assert len(many) == 20 and many[0]["bpp"] == pytest.approx(0.1) and many[-1]["bpp"] == pytest.approx(3.0)


def test_jxl_size_is_read_before_decoding_and_effort_is_an_option(image: np.ndarray) -> None:
    from dappled.codec.classical.image import jxl_size

    for h, w in ((1, 1), (8, 16), (24, 32), (17, 33), (128, 176), (96, 128)):  # small, 1:1, 4:3 ...
        crop = np.ascontiguousarray(np.tile(image, (1, 2, 1))[:h, :w])
        payload = parse(encode_image(crop, "jxl", quality=50)).frames()[0].payload
        assert jxl_size(payload) == (w, h)
    with pytest.raises(BitstreamError, match="not a JPEG XL"):
        jxl_size(b"\x00\x00\x00\x0cJXL \r\n\x87\n")  # the ISOBMFF container is not what we store
    fast = encode_image(image, "jxl", quality=50, effort=3)
    assert fast != encode_image(image, "jxl", quality=50)
    assert psnr(image, decode_image(fast)) > 25
    with pytest.raises(OptionError, match="effort"):
        encode_image(image, "jxl", quality=50, effort=10)
