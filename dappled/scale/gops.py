"""Video encoded group by group: every group of ``gop`` frames is coded by its own stream encoder
(``Codec.make_encoder``, any codec with a video form), so the groups can run on different workers
(local processes or Ray tasks) and their packets are concatenated into one stream.

Closed groups ("independent GoPs"): the splat video encoder normally carries three things from
one group into the next (the unspent byte budget, its own last fit as the warm start of the next
intra fit, and its random generator's state). Here each group starts from a fresh encoder: the
rate is decided before the split (every group gets its frames' share of the target rate, nothing
carried), the intra frame is a fresh fit (``i_iterations``), and the random generator starts from
the seed. A group's bytes then depend only on its frames and the settings, so the stream is the
same byte for byte however many workers coded it, one process included
(``encode_video_gops(..., jobs=1)`` is the single-process reference). Torch runs one thread in
every group encode, so float reductions do not depend on the worker's core count.

For the splat video codec these streams are not the bytes of ``codec.video.encode_video`` (which
chains the groups); any decoder plays both, since every group starts with an intra frame.
Intra-only codecs (every other codec's default video form) give the same bytes either way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from dappled.codec.container import Packet, StreamHeader
from dappled.codec.registry import DEFAULT_VIDEO_CODEC

GROUP_THREADS = 1  # torch threads of every group encode (the bytes must not depend on the worker)


def plan_groups(n_frames: int, gop: int) -> list[tuple[int, int]]:
    """(first frame, frame count) of each group."""
    return [(s, min(gop, n_frames - s)) for s in range(0, n_frames, gop)]


def encode_group(frames: Sequence[np.ndarray], start: int, n_total: int, fps: float, codec: str,
                 params: Any, kbps: float | None, gop: int) -> tuple[list[Packet], list[Any], float]:
    """Code one group (frames ``start``.. of a clip of ``n_total``) with a fresh stream encoder of
    ``codec`` (``codec.video.video_codec``); returns its packets, per-frame stats and seconds.
    Runs in a worker."""
    from dappled.codec.threads import torch_threads
    from dappled.codec.video import video_codec

    with torch_threads("cpu", GROUP_THREADS):  # on every device: the bytes must not depend on it
        t0 = time.perf_counter()
        h, w = frames[0].shape[:2]
        enc = video_codec(codec).make_encoder(w, h, fps, params, kbps=kbps, gop=gop, frames=n_total)
        enc.index = start  # frame numbers of the packets; the group's first frame is intra
        packets = [enc.encode(np.ascontiguousarray(f), n_total - (start + i)) for i, f in enumerate(frames)]
        return packets, enc.stats, time.perf_counter() - t0


def encode_video_gops(frames: Sequence[np.ndarray], fps: float | Fraction,
                      codec: str = DEFAULT_VIDEO_CODEC, *, kbps: float | None = None,
                      quality: int | None = None, gop: int | None = None,
                      device: str = "cpu", seed: int = 0, jobs: int = 1, ray: str | None = None,
                      progress: bool = False, **options: Any) -> Any:
    """Encode RGB frames into a video stream with closed groups coded in parallel: on ``jobs``
    local processes, or as Ray tasks on the cluster at ``ray`` (one CPU each, the frames sent by
    value). Returns a ``codec.video.VideoEncodeResult`` (no reconstruction); the bytes do not
    depend on ``jobs`` or ``ray``."""
    from dappled.codec.progress import bar as progress_bar
    from dappled.codec.registry import EncodeParams
    from dappled.codec.video import VideoEncodeResult, build_stream, check_frames, video_codec
    from dappled.scale.runner import open_backend, run_all

    impl = video_codec(codec)
    h, w, rate, gop = check_frames(frames, fps, gop)
    n = len(frames)
    params = EncodeParams(quality, None, device, False, seed, dict(options))
    # bad settings fail here, with the codec's own checks, before any worker starts
    config = impl.make_encoder(w, h, float(rate), params, kbps=kbps, gop=gop, frames=n).config()
    groups = plan_groups(n, gop)

    results: dict[int, tuple[list[Packet], list[Any], float]] = {}
    bar = progress_bar(n, "encode", "frame", progress)
    t0 = time.perf_counter()

    def make_args(i: int) -> tuple[Any, ...]:
        s, count = groups[i]
        chunk = [np.ascontiguousarray(f) for f in frames[s : s + count]]
        return (chunk, s, n, float(rate), codec, params, kbps, gop)

    def done(i: int, result: tuple[list[Packet], list[Any], float]) -> None:
        results[i] = result
        bar.update(groups[i][1])

    try:
        with open_backend(jobs=jobs, ray=ray, device=device) as backend:
            run_all(backend, encode_group, len(groups), make_args, done)
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    packets = [p for i in range(len(groups)) for p in results[i][0]]
    stats = [s for i in range(len(groups)) for s in results[i][1]]
    header = StreamHeader(impl.codec_id, w, h, n, rate.numerator, rate.denominator)
    data = build_stream(header, packets, config)
    return VideoEncodeResult(data, stats, seconds)


def encode_video_file_gops(src: str, dst: str, codec: str = DEFAULT_VIDEO_CODEC, *, start: int = 0,
                           frames: int | None = None, **kwargs: Any) -> Any:
    """Read a clip, encode it by groups (encode_video_gops), write the stream atomically; returns
    a ``codec.video.VideoFileReport``."""
    from dappled.codec.video import VideoFileReport
    from dappled.datasets.video import is_image_pattern, load_clip, probe_video
    from dappled.fileio import atomic_write_bytes

    fps: Fraction = Fraction(25)
    if not is_image_pattern(src):
        fps = probe_video(src).fps
    clip = load_clip(src, start, frames)
    result = encode_video_gops(clip, fps, codec, **kwargs)
    atomic_write_bytes(dst, result.data)
    h, w = clip[0].shape[:2]
    kbps = 8 * len(result.data) / 1000 / (len(clip) / float(fps))
    return VideoFileReport(len(clip), len(result.data), kbps, result.seconds, w, h, result.stats)
