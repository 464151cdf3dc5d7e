"""`dappled play --device auto` picks the fastest decoder a codec has on this machine and names it;
an explicit device the codec or the machine lacks is a one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest
from _cli import one_line_error, run_dappled

from dappled.codec import registry
from dappled.devices import cuda_available
from dappled.errors import OptionError

CONFORMANCE = Path(__file__).parent / "conformance"


@pytest.mark.parametrize("name", registry.names(streams=True))
def test_every_codec_names_a_cpu_decoder_and_auto_picks_one_it_has(name: str) -> None:
    codec = registry.get(name)
    device, what = codec.pick_decoder("cpu")
    assert device == "cpu" and what == codec.decoders["cpu"] and what
    auto, _ = codec.pick_decoder("auto")
    expected = "cuda" if "cuda" in codec.decoders and cuda_available() else "cpu"
    assert auto == expected


def test_an_absent_device_is_refused() -> None:
    codecs = [registry.get(n) for n in registry.names(streams=True)]
    codec = next(c for c in codecs if "cuda" not in c.decoders)
    with pytest.raises(OptionError, match="has no cuda decoder"):
        codec.pick_decoder("cuda")
    with_cuda = next(c for c in codecs if "cuda" in c.decoders)
    if cuda_available():  # this machine has a GPU: the CUDA decoder is taken
        assert with_cuda.pick_decoder("cuda")[0] == "cuda"
    else:
        with pytest.raises(OptionError, match="no CUDA GPU"):
            with_cuda.pick_decoder("cuda")


@pytest.mark.parametrize("stream", ["fieldv.dpl", "splatv.dpl"])
def test_headless_play_reports_the_decoder_it_ran(stream: str) -> None:
    res = run_dappled("play", str(CONFORMANCE / stream), "--headless")
    assert res.returncode == 0, res.stderr
    header_codec = registry.get(stream.removesuffix(".dpl"))
    device, what = header_codec.pick_decoder("auto")
    assert f"decoder {what} on {device}" in res.stdout
    if not cuda_available():
        one_line_error(run_dappled("play", str(CONFORMANCE / stream), "--headless", "--device", "cuda"),
                       "no CUDA GPU", code=2)
