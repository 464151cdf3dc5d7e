"""The codec families' door (DEVELOPERS.md, docs/format.md "Adding a codec"): a codec lives in
its own package under dappled/codec/<family>/ plus one registry line. No other module of dappled
spells a codec's name, and every declared video form is itself a registered codec."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from dappled.codec import registry

PACKAGE = Path(__file__).resolve().parents[1] / "dappled"
FAMILIES = sorted(p.name for p in (PACKAGE / "codec").iterdir() if (p / "__init__.py").exists())
# (file relative to dappled/, literal) -> why that file may spell the name. Each entry names a
# different thing that happens to share a codec's name.
ALLOWED = {
    ("models/rat/store.py", "rat"): "the name of the shipped rat model, not the codec",
    ("models/tokens/store.py", "tokens"): "the name of the shipped tokens model, not the codec",
    ("datasets/video.py", "x264"): "an output encoder of `dappled decode` (PyAV), not the codec",
    ("datasets/video.py", "x265"): "an output encoder of `dappled decode` (PyAV), not the codec",
    ("cli/main.py", "x264"): "the --vcodec choices of `dappled decode` (PyAV output encoders)",
    ("cli/main.py", "x265"): "the --vcodec choices of `dappled decode` (PyAV output encoders)",
    ("cli/train_cmds.py", "rat"): "the `dappled train rat` command, which trains the rat model",
    ("cli/train_cmds.py", "tokens"): "the `dappled train tokens` command, which trains the tokens model",
}


def _codec_files() -> list[Path]:
    """Sources outside the codec family packages and the registry."""
    inside = [PACKAGE / "codec" / f for f in FAMILIES] + [PACKAGE / "codec" / "registry.py"]
    return [p for p in sorted(PACKAGE.rglob("*.py"))
            if not any(p == q or q in p.parents for q in inside)]


def _literals(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def test_families_are_packages_with_their_codecs() -> None:
    assert {"splat", "field", "rat", "tokens", "classical"} <= set(FAMILIES)
    for name in registry.names():
        module = registry._TABLE[name][1].split(":")[0]
        family = module.split(".")[2]
        assert module.startswith("dappled.codec.") and family in FAMILIES, (name, module)


def test_no_codec_name_outside_its_package_and_the_registry() -> None:
    names = set(registry.names())
    found = []
    for path in _codec_files():
        rel = path.relative_to(PACKAGE).as_posix()
        for lit in sorted(_literals(path) & names):
            if (rel, lit) not in ALLOWED:
                found.append(f"dappled/{rel}: {lit!r}")
    assert not found, "codec names spelled outside their package and the registry:\n" + "\n".join(found)


def test_the_allow_list_is_still_needed() -> None:
    """An allowance whose literal is gone must go too (so the list never grows stale)."""
    stale = [key for key in ALLOWED if key[1] not in _literals(PACKAGE / key[0])]
    assert not stale, stale


@pytest.mark.parametrize("name", registry.names())
def test_a_declared_video_form_is_a_registered_video_codec(name: str) -> None:
    codec = registry.get(name)
    if codec.video_form is None:
        assert registry.video_codec(name) is codec
        return
    assert codec.video_form in registry.names()
    form = registry.video_codec(name)
    assert form.name == codec.video_form and form.video_form is None and form.writes_streams
    assert form.video_stream


def test_defaults_are_registered_codecs() -> None:
    assert registry.get(registry.DEFAULT_CODEC).writes_streams
    assert registry.video_codec(registry.DEFAULT_VIDEO_CODEC).video_stream
    assert registry.get(registry.IMAGE_ANCHOR).baseline
    for anchor in registry.VIDEO_ANCHORS:
        assert not registry.get(anchor).writes_streams and registry.get(anchor).baseline


def test_resolve_quality_is_the_default_unless_given() -> None:
    for name in registry.names(streams=True):
        codec = registry.get(name)
        assert codec.resolve_quality(registry.EncodeParams()) == codec.default_quality
        lo, hi = codec.quality_range
        assert codec.resolve_quality(registry.EncodeParams(quality=hi)) == hi
        assert lo <= codec.default_quality <= hi
