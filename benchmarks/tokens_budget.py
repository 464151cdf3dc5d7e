"""Quality against the token budget on Kodak, through progressive truncation (issue 5).

Every image is encoded once with all K tokens in every tile (``alloc=uniform`` at a rate above
the codec's ceiling), then cut with :func:`dappled.codec.tokens.codec.truncate_stream` to its first j
token positions for j in the ladder, and each cut stream is decoded through the container. Prints
a Markdown table (mean bpp, PSNR, MS-SSIM per j) and writes a plot. Usage:

    python benchmarks/tokens_budget.py --out docs/img/rd-kodak-tokens-budget.png [--limit N]
"""

from __future__ import annotations

import argparse

import numpy as np
from tqdm import tqdm

from dappled.codec import api
from dappled.codec.tokens.codec import truncate_stream
from dappled.datasets.images import default_data_root, load_image
from dappled.eval.metrics import ms_ssim, psnr

LADDER = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="PNG plot to write")
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    paths = sorted((default_data_root() / "kodak").glob("*.png"))[: args.limit]
    res = np.zeros((len(paths), len(LADDER), 3))
    for i, path in enumerate(tqdm(paths, desc="kodak", unit="img")):
        img = load_image(path)
        full = api.encode_image(img, "tokens", bpp=1.0, alloc="uniform")
        for jj, j in enumerate(LADDER):
            data = truncate_stream(full, j)
            out = api.decode_image(data)
            res[i, jj] = (8 * len(data) / (img.shape[0] * img.shape[1]), psnr(img, out), ms_ssim(img, out))
    mean = res.mean(0)
    print(f"Kodak, {len(paths)} images, one stream per image cut after j token positions")
    print("| tokens per tile j | bpp | PSNR (dB) | MS-SSIM |")
    print("|---:|---:|---:|---:|")
    for jj, j in enumerate(LADDER):
        print(f"| {j} | {mean[jj, 0]:.4f} | {mean[jj, 1]:.2f} | {mean[jj, 2]:.4f} |")
    mono = all(np.diff(mean[:, 1]) > 0) and all(np.diff(mean[:, 2]) > 0)
    print(f"mean PSNR and MS-SSIM strictly increasing in j: {mono}")
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        ax[0].plot(LADDER, mean[:, 1], "o-")
        ax[0].set_xlabel("tokens per tile (j)")
        ax[0].set_ylabel("PSNR (dB)")
        ax[1].plot(LADDER, mean[:, 2], "o-", color="C1")
        ax[1].set_xlabel("tokens per tile (j)")
        ax[1].set_ylabel("MS-SSIM")
        for a in ax:
            a.set_xscale("log", base=2)
            a.grid(True, alpha=0.3)
        fig.suptitle(f"tokens on Kodak ({len(paths)} images): quality vs token budget (progressive cuts)")
        fig.tight_layout()
        fig.savefig(args.out, dpi=110)
        print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
