"""Time the numba splat renderer on a 768x512 scene of 4000 Gaussians (sigma 2-10 px).

Prints the median of several runs after a warm-up, for the decoder's forward-only path
(numpy in, numpy out), the autograd forward, and forward + backward (the encoder's step).
Usage: python benchmarks/render_speed.py [--n 4000] [--width 768] [--height 512] [--runs 21]
       [--threads T]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numba
import torch

from dappled.models.splat import COV_EPS, render_numba, render_numba_forward


def make_scene(n: int, height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random scene: uniform means, random orientations, axis sigmas uniform in [2, 10] px."""
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 2, generator=g) * torch.tensor([width, height], dtype=torch.float32)
    sig = 2.0 + 8.0 * torch.rand(n, 2, generator=g)
    th = torch.rand(n, generator=g) * torch.pi
    cos, sin = torch.cos(th), torch.sin(th)
    rot = torch.stack((torch.stack((cos, -sin), -1), torch.stack((sin, cos), -1)), -2)
    cov = rot @ torch.diag_embed(sig**2 - COV_EPS) @ rot.transpose(-1, -2)
    low = torch.linalg.cholesky(cov)
    chol = torch.stack((low[:, 0, 0], low[:, 1, 0], low[:, 1, 1]), -1)
    colors = torch.randn(n, 3, generator=g) * 0.3
    return means, chol, colors


def time_ms(fn: Callable[[], object], runs: int, warmup: int = 3) -> str:
    """Wall time of fn() in ms after warm-up: median and min, plus median process CPU time.

    On a shared machine the wall median is inflated by other load; the min and the CPU time
    (summed over threads) are the better guides there.
    """
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(runs):
        c0 = time.process_time()
        t0 = time.perf_counter()
        fn()
        wall.append(1000.0 * (time.perf_counter() - t0))
        cpu.append(1000.0 * (time.process_time() - c0))
    return (
        f"median {statistics.median(wall):7.2f} ms   min {min(wall):7.2f} ms   "
        f"cpu {statistics.median(cpu):7.2f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--threads", type=int, default=0, help="numba threads (default: all)")
    args = ap.parse_args()
    if args.threads:
        numba.set_num_threads(args.threads)
    h, w = args.height, args.width
    means, chol, colors = make_scene(args.n, h, w)
    m_np, l_np, c_np = (x.numpy() for x in (means, chol, colors))
    params = [x.clone().requires_grad_() for x in (means, chol, colors)]
    grad = torch.randn(h, w, 3, generator=torch.Generator().manual_seed(1))

    def fwd_np() -> object:
        return render_numba_forward(m_np, l_np, c_np, h, w)

    def fwd_autograd() -> object:
        with torch.no_grad():
            return render_numba(*params, h, w)

    def fwd_bwd() -> object:
        for p in params:
            p.grad = None
        img = render_numba(*params, h, w)
        img.backward(grad)
        return img

    print(
        f"scene {w}x{h}, N={args.n}, threads={numba.get_num_threads()}, median of {args.runs} runs"
    )
    print(f"forward (numpy, decode path): {time_ms(fwd_np, args.runs)}")
    print(f"forward (autograd wrapper):   {time_ms(fwd_autograd, args.runs)}")
    print(f"forward + backward:           {time_ms(fwd_bwd, args.runs)}")


if __name__ == "__main__":
    main()
