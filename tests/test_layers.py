"""The layering rules of DEVELOPERS.md, checked on the source (every import statement, also those
inside functions), and the cold-start promise: decoding a splat or field image never imports torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from dappled.codec import api, registry
from dappled.datasets import SAMPLE_IMAGE, load_image

PACKAGE = Path(__file__).resolve().parents[1] / "dappled"

# package -> packages it must never import (lower layers never import higher ones)
FORBIDDEN = {
    "dappled.entropy": ("dappled.codec", "dappled.models", "dappled.datasets", "dappled.eval", "dappled.cli",
                        "dappled.stream"),
    "dappled.datasets": ("dappled.codec", "dappled.models", "dappled.eval", "dappled.cli", "dappled.stream"),
    "dappled.models": ("dappled.codec", "dappled.datasets", "dappled.eval", "dappled.cli", "dappled.stream"),
    "dappled.codec": ("dappled.eval", "dappled.cli", "dappled.stream"),
    "dappled.eval": ("dappled.cli", "dappled.stream"),
    "dappled.stream": ("dappled.cli", "dappled.models", "dappled.codec.splat", "dappled.codec.field",
                       "dappled.codec.rat", "dappled.codec.tokens", "dappled.codec.classical"),
}
# modules that must stay codec-agnostic: they look codecs up in the registry, by id
AGNOSTIC = ("dappled/codec/video.py", "dappled/codec/stream.py", "dappled/codec/api.py",
            "dappled/codec/registry.py", "dappled/codec/container.py")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_lower_layers_never_import_higher_ones(layer: str) -> None:
    folder = PACKAGE / layer.split(".")[1]
    bad = []
    for path in sorted(folder.rglob("*.py")):
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[layer]):
                bad.append(f"{_module_name(path)} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_video_layer_is_codec_agnostic() -> None:
    codec_modules = ("dappled.codec.splat", "dappled.codec.field", "dappled.codec.rat",
                     "dappled.codec.tokens", "dappled.codec.classical", "dappled.models")
    for rel in AGNOSTIC:
        names = _imports(PACKAGE.parent / rel)
        bad = [n for n in names if any(n == c or n.startswith(c + ".") for c in codec_modules)]
        assert not bad, (rel, bad)


def test_ground_modules_import_nothing_of_dappled_but_errors() -> None:
    for name in ("limits.py", "quality.py", "errors.py", "fileio.py"):
        deps = {n for n in _imports(PACKAGE / name) if n.startswith("dappled")}
        assert deps <= {"dappled.errors"}, (name, deps)


def _modules_after(code: str, tmp_path: Path) -> set[str]:
    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300, env=None)
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


@pytest.mark.parametrize("codec", ["splat", "splatv", "field"])
def test_splat_decode_and_info_never_import_torch(codec: str, tmp_path: Path) -> None:
    image = load_image(SAMPLE_IMAGE)[100:164, 200:296]
    stream = tmp_path / "s.dpl"
    stream.write_bytes(api.encode_image(image, codec, **registry.get(codec).test_encode_kwargs()))
    out = str(tmp_path / "o.png")
    code = (f"from dappled.cli import cli\nfor args in (['decode', {str(stream)!r}, '-o', {out!r}],"
            f" ['info', {str(stream)!r}]):\n"
            "    try:\n        cli(args)\n    except SystemExit as e:\n        assert not e.code, e.code\n")
    mods = _modules_after(code, tmp_path)
    assert "torch" not in mods and "compressai" not in mods
    assert load_image(tmp_path / "o.png").shape == image.shape


def test_the_cli_starts_without_torch(tmp_path: Path) -> None:
    mods = _modules_after("from dappled.cli import cli\nfrom dappled.codec import api, registry", tmp_path)
    assert "torch" not in mods and "numba" not in mods
