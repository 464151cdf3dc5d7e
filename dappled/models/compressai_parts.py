"""The parts of CompressAI the rat model uses (entropy models, GDN, the model base class, conv
helpers), imported without running CompressAI's package ``__init__``.

That ``__init__`` imports every CompressAI sub-package: the data sets, whose point-cloud part
imports torch_geometric, and the transforms registry, which imports it again; together about
5 s of a 9 s cold `dappled decode` of a rat stream, for code the decoder never runs. The
packages ``compressai``, ``compressai.models`` and ``compressai.registry`` are registered
empty (their modules found, not executed) with the few names the imported modules use; every
CompressAI module is still importable by its full name afterwards. When CompressAI was
already imported normally, it is used as it is.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Any

_ENTROPY_CODERS = ["ans"]
_state = {"coder": "ans"}


def _empty_package(name: str) -> ModuleType:
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ImportError(f"cannot find {name}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


def _set_entropy_coder(name: str) -> None:
    if name not in _ENTROPY_CODERS:
        raise ValueError(f'Invalid entropy coder "{name}", choose from ({", ".join(_ENTROPY_CODERS)}).')
    _state["coder"] = name


def _registry_getattr(name: str) -> Any:
    if name in ("TRANSFORMS", "register_transform"):  # the part that imports torch_geometric
        return getattr(importlib.import_module("compressai.registry.transforms"), name)
    raise AttributeError(f"module 'compressai.registry' has no attribute {name!r}")


def _register_packages() -> None:
    if "compressai" in sys.modules:
        return
    pkg = _empty_package("compressai")
    pkg.get_entropy_coder = lambda: _state["coder"]  # type: ignore[attr-defined]
    pkg.set_entropy_coder = _set_entropy_coder  # type: ignore[attr-defined]
    pkg.available_entropy_coders = lambda: list(_ENTROPY_CODERS)  # type: ignore[attr-defined]
    _empty_package("compressai.models")
    registry = _empty_package("compressai.registry")
    torch_registry = importlib.import_module("compressai.registry.torch")
    for key in dir(torch_registry):
        if key.isupper() or key.startswith("register_"):
            setattr(registry, key, getattr(torch_registry, key))
    registry.__getattr__ = _registry_getattr  # type: ignore[attr-defined]


_register_packages()
with warnings.catch_warnings():
    # torch_geometric (if anything still imports it) calls the deprecated torch.jit.script
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    from compressai.entropy_models import EntropyBottleneck, GaussianConditional
    from compressai.layers import GDN
    from compressai.models.base import CompressionModel, get_scale_table
    from compressai.models.utils import conv, deconv

__all__ = ["GDN", "CompressionModel", "EntropyBottleneck", "GaussianConditional", "conv", "deconv",
           "get_scale_table"]
