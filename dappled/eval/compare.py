"""BD figures between the series of one `dappled eval` run folder: by default the pairs the codecs
declare (``Codec.comparisons``: the rat ablation, with vs without region-adaptive transforms, the
shallow vs the full decoder, rat vs JPEG and WebP).

`dappled eval` puts one BD table per run against one anchor and refuses a codec named twice,
so the rat variants are evaluated by separate runs into the same folder (different codec
options make different series labels), and this module compares any two of them:

    python -m dappled.eval.compare runs/kodak-rat [TEST=ANCHOR ...]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dappled.codec import registry
from dappled.eval.bdrate import bd_quality, bd_rate, msssim_db
from dappled.eval.summary import CurvePoint, mean_curves
from dappled.eval.sweep import load_results


def default_pairs() -> tuple[tuple[str, str], ...]:
    """The (test, anchor) series pairs every registered codec declares (``Codec.comparisons``)."""
    pairs: list[tuple[str, str]] = []
    for name in registry.names():
        try:
            pairs += registry.get(name).comparisons
        except ImportError:  # a codec whose library is missing here declares nothing
            continue
    return tuple(pairs)


def _quality(p: CurvePoint, key: str) -> float:
    return p.psnr if key == "psnr" else msssim_db(p.ms_ssim)


def compare_markdown(run_dir: str, pairs: Sequence[tuple[str, str]] | None = None) -> str:
    """A Markdown table of BD-rate (PSNR), BD-PSNR and BD-rate (MS-SSIM dB), test vs anchor."""
    pairs = default_pairs() if pairs is None else pairs
    rows = load_results(run_dir)
    n_images = len({(r["image"], r["image_sha1"]) for r in rows})
    curves = {c.label: c for c in mean_curves(rows, n_images)}
    lines = ["| test | anchor | BD-rate (PSNR) | BD-PSNR | BD-rate (MS-SSIM dB) |",
             "|---|---|---:|---:|---:|"]
    for test, anchor in pairs:
        if test not in curves or anchor not in curves:
            lines.append(f"| {test} | {anchor} | n/a | n/a | n/a |")
            continue
        t, a = curves[test].complete_points(), curves[anchor].complete_points()
        cells = []
        for fn, key, fmt in ((bd_rate, "psnr", "{:+.1f} %"), (bd_quality, "psnr", "{:+.2f} dB"),
                             (bd_rate, "ms_ssim", "{:+.1f} %")):
            try:
                cells.append(fmt.format(fn([p.bpp for p in a], [_quality(p, key) for p in a],
                                           [p.bpp for p in t], [_quality(p, key) for p in t])))
            except ValueError as exc:
                cells.append(f"n/a ({exc})")
        lines.append(f"| {test} | {anchor} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    """Print the comparison table of a run folder (pairs given as TEST=ANCHOR, or the defaults)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        raise SystemExit("usage: python -m dappled.eval.compare RUN_DIR [TEST=ANCHOR ...]")
    pairs = [tuple(a.split("=", 1)) for a in args[1:]] or list(default_pairs())
    print(compare_markdown(args[0], pairs), end="")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
