"""A short structure-aware fuzz run over every registered decoder (the long run is
benchmarks/fuzz_decoders.py): CRC-valid mutants with random field values (tests/_fuzz.py) either
decode to a frame of the declared shape or raise BitstreamError; nothing else."""

from __future__ import annotations

import random

import numpy as np
import pytest
from _fuzz import mutate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dappled.codec import api, registry
from dappled.codec.video import decode_video, stream_header
from dappled.datasets import SAMPLE_IMAGE, load_image
from dappled.errors import BitstreamError

CODECS = registry.names(streams=True)


@pytest.fixture(scope="module")
def bases() -> dict[str, bytes]:
    from _clips import FAST, moving_pattern

    from dappled.codec.video import encode_video

    image = load_image(SAMPLE_IMAGE)[180:212, 300:348]
    out = {name: api.encode_image(image, name, **registry.get(name).test_encode_kwargs()) for name in CODECS}
    out["splatv-video"] = encode_video(moving_pattern(3), 25, "splat", gop=3, kbps=300, **FAST).data
    return out


def _check(data: bytes) -> None:
    try:
        h = stream_header(data)
        if h.frame_count > 1:
            frames = decode_video(data)
            assert len(frames) == h.frame_count
            assert all(f.shape == (h.height, h.width, 3) and f.dtype == np.uint8 for f in frames)
        else:
            out = api.decode_image(data)
            assert out.shape == (h.height, h.width, 3) and out.dtype == np.uint8
    except BitstreamError:
        pass


def test_mutants_are_crc_valid_and_differ(bases: dict[str, bytes]) -> None:
    from dappled.codec.container import unpack

    changed = 0
    for k in range(50):
        data = mutate(bases["splat"], random.Random(k))
        unpack(data)  # the container (CRCs included) still parses: only the codec can object
        changed += data != bases["splat"]
    assert changed >= 45


@pytest.mark.parametrize("name", [*CODECS, "splatv-video"])
@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False))
def test_structured_mutants_decode_or_raise_bitstream_error(name: str, bases: dict[str, bytes],
                                                            rng: random.Random) -> None:
    _check(mutate(bases[name], rng))
