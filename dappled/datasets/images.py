"""Reading and writing still images, and resolving named image sets (kodak, bsds-test, folders)."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dappled.errors import InputError
from dappled.fileio import atomic_open
from dappled.limits import MAX_DIMENSION, MAX_PIXELS

SAMPLE_IMAGE = Path(__file__).parent / "samples" / "kodim23.png"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

# Named sets, relative to the data root (../shared/data from the project root by default).
NAMED_SETS = {
    "kodak": "kodak",
    "bsds-test": "bsds500/images/test",
    "bsds-train": "bsds500/images/train",
    "bsds-val": "bsds500/images/val",
}


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Load an image file as an (H, W, 3) uint8 RGB array; InputError naming the file if it can't."""
    return _load(Path(path), Path(path))


def load_image_bytes(data: bytes, name: str) -> np.ndarray:
    """Decode an image file's bytes (an image sent by value, e.g. to a Ray worker) like load_image;
    errors name ``name``."""
    return _load(io.BytesIO(data), name)


def _load(source: Path | io.BytesIO, p: Path | str) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                w, h = im.size
                if w > MAX_DIMENSION or h > MAX_DIMENSION or w * h > MAX_PIXELS:
                    raise InputError(f"{p}: image size {w}x{h} is over the limit")
                arr = to_rgb8(im)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{p}: is a directory") from None
    except UnidentifiedImageError:  # Pillow names the file object (<_io.BytesIO object at 0x...>)
        raise InputError(f"{p}: cannot read image (not an image file, or a format Pillow does not "
                         "read)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise InputError(f"{p}: cannot read image ({str(exc).replace(repr(source), str(p))})") from None
    return np.ascontiguousarray(arr)


def to_rgb8(im: Image.Image) -> np.ndarray:
    """An opened image as (H, W, 3) uint8 RGB. 16-bit (and 32-bit integer) grayscale is scaled
    to 8 bits (Pillow's convert("RGB") would clip it: a 0..65535 ramp would become almost all
    255); alpha is dropped; palettes and other modes go through Pillow's conversion."""
    if im.mode.startswith("I;16") or im.mode == "I":
        v = np.asarray(im).astype(np.int64)
        full = 65535 if im.mode.startswith("I;16") or v.max(initial=0) > 255 else 255
        v8 = ((np.clip(v, 0, full) * 255 + full // 2) // full).astype(np.uint8)
        return np.repeat(v8[:, :, None], 3, axis=2)
    if im.mode == "F":
        v8 = np.clip(np.rint(np.asarray(im, dtype=np.float64)), 0, 255).astype(np.uint8)
        return np.repeat(v8[:, :, None], 3, axis=2)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def save_image(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Save an (H, W, 3) uint8 array atomically; the format follows the file suffix (PNG default)."""
    p = Path(path)
    fmt = Image.registered_extensions().get(p.suffix.lower(), "PNG")
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format=fmt)
    with atomic_open(p) as f:
        f.write(buf.getvalue())


def default_data_root() -> Path:
    """Where named data sets live: $DAPPLED_DATA, else ../shared/data beside the project root."""
    env = os.environ.get("DAPPLED_DATA")
    if env:
        return Path(env)
    project_root = Path(__file__).resolve().parents[2]
    return project_root.parent / "shared" / "data"


def dataset_images(name_or_path: str, data_root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Image files of a named set (kodak, bsds-test ...) or of any folder, sorted by name."""
    if name_or_path in NAMED_SETS:
        root = Path(data_root) if data_root is not None else default_data_root()
        folder = root / NAMED_SETS[name_or_path]
    else:
        folder = Path(name_or_path)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise InputError(f"{folder}: no such image folder (set --data-root or DAPPLED_DATA)")
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no images in this folder")
    return files
