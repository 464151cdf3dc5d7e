"""BSDS500 with its human segmentations, as training crops for the learned codecs.

The photos are JPEG, so every image is downscaled by ``scale`` (2 by default, area filter) to
wash out the compression artifacts; the label maps are downscaled by nearest neighbour so
they stay integer region ids. Each image has several annotators; a crop uses one at random.
Everything is decoded once into memory (300 images at half size are about 35 MB), so a
training step costs a crop and a flip, not a JPEG decode.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dappled.errors import InputError

SPLITS = ("train", "val", "test")


def bsds_root(data_root: str | os.PathLike[str] | None = None) -> Path:
    """The BSDS500 folder under the data root (default $DAPPLED_DATA or ../shared/data)."""
    from dappled.datasets.images import default_data_root

    root = Path(data_root) if data_root is not None else default_data_root()
    return root / "bsds500"


def bsds_pairs(splits: tuple[str, ...] = ("train", "val"),
               data_root: str | os.PathLike[str] | None = None) -> list[tuple[Path, Path]]:
    """(image, groundTruth .mat) paths of the named splits, sorted by name."""
    root = bsds_root(data_root)
    pairs = []
    for split in splits:
        if split not in SPLITS:
            raise InputError(f"unknown BSDS500 split {split!r} (known: {', '.join(SPLITS)})")
        img_dir, gt_dir = root / "images" / split, root / "groundTruth" / split
        if not img_dir.is_dir() or not gt_dir.is_dir():
            raise InputError(f"{img_dir}: BSDS500 split not found (set --data-root or DAPPLED_DATA)")
        for img in sorted(img_dir.glob("*.jpg")):
            gt = gt_dir / f"{img.stem}.mat"
            if gt.exists():
                pairs.append((img, gt))
    if not pairs:
        raise InputError(f"{root}: no BSDS500 images with segmentations in {', '.join(splits)}")
    return pairs


def load_segmentations(path: str | os.PathLike[str]) -> list[np.ndarray]:
    """The human label maps of one image (one (H, W) int32 array per annotator)."""
    import scipy.io

    try:
        gt = scipy.io.loadmat(str(path))["groundTruth"]
        maps = [np.asarray(gt[0, k]["Segmentation"][0, 0], dtype=np.int32) for k in range(gt.shape[1])]
    except (OSError, KeyError, IndexError, ValueError, TypeError) as exc:
        raise InputError(f"{path}: not a BSDS500 groundTruth file ({exc})") from None
    if not maps:
        raise InputError(f"{path}: no segmentation in the file")
    return maps


def downscale(image: np.ndarray, labels: list[np.ndarray], scale: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Image downscaled by an integer factor (box filter), label maps by nearest neighbour."""
    if scale == 1:
        return image, labels
    h, w = image.shape[:2]
    nh, nw = h // scale, w // scale
    small = np.asarray(Image.fromarray(image).resize((nw, nh), Image.Resampling.BOX), dtype=np.uint8)
    off = scale // 2
    return small, [lab[off::scale, off::scale][:nh, :nw] for lab in labels]


@dataclass
class BsdsCrops:
    """Random training crops of BSDS500 with a region label map each."""

    images: list[np.ndarray]
    labels: list[list[np.ndarray]]
    max_regions: int = 32

    @classmethod
    def load(cls, splits: tuple[str, ...] = ("train", "val"), data_root: str | os.PathLike[str] | None = None,
             scale: int = 2, limit: int | None = None, progress: bool = False) -> BsdsCrops:
        """Decode and downscale every image (and its segmentations) of the splits once."""
        from tqdm import tqdm

        from dappled.datasets.images import load_image

        pairs = bsds_pairs(splits, data_root)[:limit]
        images, labels = [], []
        for img_path, gt_path in tqdm(pairs, desc="load BSDS500", unit="img", disable=not progress):
            img, segs = downscale(load_image(img_path), load_segmentations(gt_path), scale)
            images.append(img)
            labels.append(segs)
        return cls(images, labels)

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, batch: int, crop: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A batch of random crops with flips: (B, crop, crop, 3) uint8 and (B, crop, crop) int64
        region ids renumbered 0..K-1 per crop (at most ``max_regions``; the smallest extra
        regions are merged into the last id)."""
        imgs = np.empty((batch, crop, crop, 3), np.uint8)
        labs = np.empty((batch, crop, crop), np.int64)
        for b in range(batch):
            i = int(rng.integers(len(self.images)))
            img = self.images[i]
            lab = self.labels[i][int(rng.integers(len(self.labels[i])))]
            h, w = img.shape[:2]
            if h < crop or w < crop:
                raise InputError(f"BSDS500 image {i} ({w}x{h}) is smaller than the {crop} px crop")
            y, x = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
            ci, cl = img[y : y + crop, x : x + crop], lab[y : y + crop, x : x + crop]
            if rng.random() < 0.5:
                ci, cl = ci[:, ::-1], cl[:, ::-1]
            if rng.random() < 0.5:
                ci, cl = ci[::-1], cl[::-1]
            imgs[b] = ci
            labs[b] = renumber(cl, self.max_regions)
        return imgs, labs


def renumber(labels: np.ndarray, max_regions: int) -> np.ndarray:
    """Region ids renumbered 0..K-1 by decreasing area; regions past ``max_regions`` share the last id."""
    ids, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    rank = np.empty(len(ids), np.int64)
    rank[np.argsort(-counts, kind="stable")] = np.arange(len(ids))
    return np.minimum(rank[inverse.reshape(labels.shape)], max_regions - 1)
