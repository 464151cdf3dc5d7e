"""Field rate control experiments (issue 20): how the rate of a fit evolves, what a lambda move
costs, and where `--bpp` lands. One fit per call, one torch thread; a JSON line per fit is
appended to OUT (resumable by hand: rerun the missing ones).

    # the hard-rounded rate at fractions of a fixed-lambda fit, and the final coded rate
    python benchmarks/field_rate.py trajectory kodim05 --crop 384x256 --lam 0.004 --iterations 250 OUT
    # the same fit with lambda multiplied by K at fraction P of the fit
    python benchmarks/field_rate.py move kodim05 --crop 384x256 --lam 0.002 --at 0.3 --factor 4 OUT
    # a --bpp encode (the rate control as shipped) and the steer's log (--iterations 0: the
    # iterations of --effort)
    python benchmarks/field_rate.py steer kodim05 --crop 384x256 --bpp 0.8 --iterations 250 OUT
    python benchmarks/field_rate.py steer kodim05 --bpp 0.5 --iterations 0 --effort fast OUT

Images are Kodak names (read from ../shared/data/kodak) or paths; --crop HxW takes the top-left
corner. Times are CPU seconds of this process.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from dappled.codec.defaults import IMAGE_CONTAINER_BYTES
from dappled.codec.field.decoder import decode_payload
from dappled.codec.field.encoder import encode_field
from dappled.codec.field.format import pack_payload
from dappled.codec.registry import EncodeParams
from dappled.datasets import load_image
from dappled.models.field.fit import FitConfig, fit, image_config, image_tensor
from dappled.models.field.integer import QMAX, encode_latents
from dappled.models.field.layout import PRESETS, grids
from dappled.models.field.quantize import quantize_network
from dappled.models.field.rate import RateSteer, TrendSteer, base_lambda

FRACTIONS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def _image(name: str, crop: str | None) -> np.ndarray:
    path = Path(name)
    if not path.exists():
        path = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodak" / f"{name}.png"
    img = load_image(path)
    if crop:
        h, w = (int(v) for v in crop.split("x"))
        img = np.ascontiguousarray(img[:h, :w])
    return img


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255.0**2 / max(float(np.mean((a.astype(float) - b) ** 2)), 1e-12))


def _fixed(img: np.ndarray, lam: float, n: int, at: float | None, factor: float, lr_net: float) -> dict:
    """A fit at a fixed lambda (moved once by `factor` at fraction `at`), coded as the codec does."""
    cfg = image_config(lam, n, img.shape[0] * img.shape[1], probes=FRACTIONS, lr_net=lr_net)

    def steer(frac: float, _rate: float, lam_now: float) -> float:
        return lam_now * factor if at is not None and frac == at else lam_now

    res = fit(img, PRESETS["low"], cfg, steer=steer if at is not None else None)
    net = quantize_network(res.model, image_tensor(img), res.lam)
    h, w = img.shape[:2]
    coded = encode_latents([np.clip(q, -QMAX, QMAX) for q in res.model.hard_latents()], grids(h, w), net)
    payload = pack_payload(net, coded.words, coded.excess)
    return {"bpp": 8 * (len(payload) + IMAGE_CONTAINER_BYTES) / (h * w),
            "psnr": _psnr(decode_payload(payload, w, h), img), "probes": res.probes, "lam_end": res.lam}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["trajectory", "move", "steer"])
    ap.add_argument("image")
    ap.add_argument("out")
    ap.add_argument("--crop")
    ap.add_argument("--lam", type=float, default=0.002)
    ap.add_argument("--iterations", type=int, default=250)
    ap.add_argument("--at", type=float, default=0.3, help="move: fraction of the fit (one of FRACTIONS)")
    ap.add_argument("--factor", type=float, default=4.0)
    ap.add_argument("--bpp", type=float, default=0.5)
    ap.add_argument("--effort", default="fast", help="steer: the effort, when --iterations is 0")
    ap.add_argument("--lr-net", type=float, default=FitConfig.lr_net)
    ap.add_argument("--target", type=float, help="trajectory/move: lambda = base_lambda(image, TARGET)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    img = _image(args.image, args.crop)
    t0 = time.process_time()
    row: dict = {"mode": args.mode, "image": args.image, "crop": args.crop, "iterations": args.iterations}
    if args.mode == "steer":
        log: list = []
        for cls in (RateSteer, TrendSteer):
            def spy(self: object, frac: float, rate: float, lam: float, _call=cls.__call__) -> float:
                new = _call(self, frac, rate, lam)
                log.append((frac, rate, lam, new))
                return new

            cls.__call__ = spy  # type: ignore[method-assign]
        options: dict = {"iterations": args.iterations} if args.iterations else {"effort": args.effort}
        enc = encode_field(img, EncodeParams(bpp=args.bpp, options=options), target_bpp=args.bpp)
        h, w = img.shape[:2]
        bpp = 8 * (len(enc.payload) + IMAGE_CONTAINER_BYTES) / (h * w)
        row.update(target=args.bpp, bpp=bpp, miss=bpp / args.bpp - 1,
                   psnr=_psnr(decode_payload(enc.payload, w, h), img), lam_end=enc.lam, log=log)
    else:
        at = args.at if args.mode == "move" else None
        lam = base_lambda(img, args.target, args.iterations) if args.target else args.lam
        row.update(lam=lam, at=at, factor=args.factor if at else 1.0, target=args.target, lr_net=args.lr_net,
                   **_fixed(img, lam, args.iterations, at, args.factor, args.lr_net))
    row["cpu_s"] = time.process_time() - t0
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps({k: v for k, v in row.items() if k not in ("probes", "log")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
