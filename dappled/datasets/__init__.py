"""Image and video loaders: Kodak, BSDS500, video clips, any folder; the bundled samples."""

from dappled.datasets.images import (
    SAMPLE_IMAGE,
    dataset_images,
    load_image,
    save_image,
)

__all__ = ["SAMPLE_IMAGE", "dataset_images", "load_image", "save_image"]
