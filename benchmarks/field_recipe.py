"""Recipe ablations of the field fit at a fixed lambda (issue 20): one configuration, named NAME,
fitted on Kodak crops (or whole images) at a few lambdas, coded and decoded as the codec does;
one JSON line per (image, lambda) with bpp, PSNR and CPU seconds, appended to $OUT
(default runs/field-recipe.jsonl).

Usage:
    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/field_recipe.py \\
        NAME [FitConfig field=value ...] [iterations=N] [lam_mult=F] [crop=0|HxW] \\
        [cases=kodim05:0.002,kodim23:0.008] [complexity=low|medium]

e.g. `... field_recipe.py base`, `... field_recipe.py base_l14 lam_mult=1.4` (the local slope of
the curve, to compare configurations at equal rate), `... field_recipe.py lrnet04 lr_net=0.04`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from field_rate import _image, _psnr

from dappled.codec.defaults import IMAGE_CONTAINER_BYTES
from dappled.codec.field.decoder import decode_payload
from dappled.codec.field.format import pack_payload
from dappled.models.field.fit import FitConfig, fit, image_config, image_tensor
from dappled.models.field.integer import QMAX, encode_latents
from dappled.models.field.layout import PRESETS, grids
from dappled.models.field.quantize import quantize_network

CASES = [("kodim05", 0.002), ("kodim05", 0.008), ("kodim23", 0.002), ("kodim23", 0.008), ("kodim15", 0.004)]


def main() -> int:
    name, args = sys.argv[1], sys.argv[2:]
    n, lam_mult, crop, cases, preset = 200, 1.0, "384x256", CASES, "low"
    types = {f.name: f.type for f in dataclasses.fields(FitConfig)}
    kw: dict[str, object] = {}
    for a in args:
        k, v = a.split("=", 1)
        if k == "iterations":
            n = int(v)
        elif k == "lam_mult":
            lam_mult = float(v)
        elif k == "crop":
            crop = None if v == "0" else v
        elif k == "complexity":
            preset = v
        elif k == "cases":
            cases = [(c.split(":")[0], float(c.split(":")[1])) for c in v.split(",")]
        else:
            kw[k] = (v == "1") if types[k] == "bool" else float(v) if "float" in types[k] else int(v)
    torch.set_num_threads(1)
    for im, lam0 in cases:
        lam = lam0 * lam_mult
        img = _image(im, crop)
        h, w = img.shape[:2]
        cfg = image_config(lam, n, h * w, **kw)  # the encoder's recipe; kw may override any field
        t0 = time.process_time()
        res = fit(img, PRESETS[preset], cfg)
        net = quantize_network(res.model, image_tensor(img), res.lam)
        coded = encode_latents([np.clip(q, -QMAX, QMAX) for q in res.model.hard_latents()], grids(h, w), net)
        payload = pack_payload(net, coded.words, coded.excess)
        row = {"config": name, "kw": kw, "complexity": preset, "image": im, "lam": lam, "n": n, "crop": crop,
               "bpp": 8 * (len(payload) + IMAGE_CONTAINER_BYTES) / (h * w),
               "psnr": _psnr(decode_payload(payload, w, h), img), "cpu": time.process_time() - t0}
        print(json.dumps(row), flush=True)
        with open(os.environ.get("OUT", "runs/field-recipe.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
