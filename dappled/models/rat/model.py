"""The rat model: a mean-scale hyperprior (Minnen et al. 2018) with region-adaptive transforms,
variable rate through gain units, and an optional shallow synthesis transform.

It follows CompressAI's ``CompressionModel`` contract: ``forward`` for training (returns the
reconstruction and the likelihoods), ``compress``/``decompress`` for real rANS streams, and
``update()`` for the CDF tables (which the shipped weights carry, so every process codes with
the very same integer tables).

Variable rate (Cui et al., "Asymmetric gained deep image compression", 2021): one learned
gain vector per rate point scales the latent before quantization, an inverse gain undoes it
before synthesis; each training crop draws its rate point and its lambda.

Shallow decoder (Yang and Mandt, "Asymmetrically-powered neural image compression with
shallow decoders", 2023): two transposed convolutions replace the four-layer synthesis; it is
trained against the frozen encoder and entropy model, so a stream decodes with either.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from dappled.models.compressai_parts import (
    GDN,
    CompressionModel,
    EntropyBottleneck,
    GaussianConditional,
    conv,
    deconv,
    get_scale_table,
)
from dappled.models.rat.regions import RegionAdaptiveTransform, downsample_labels, grid_labels, grid_labels_at

# Total stride of the analysis + hyper-analysis: images are padded to a multiple of it.
STRIDE = 64
DECODERS = ("full", "shallow")
SYNTHESIS_HALO = 3
"""Latent rows above and below a strip of the synthesis that reach its output rows: the full
synthesis (four 5x5 stride-2 transposed convolutions, and the RAT's 3x3 kernel at 1/4 scale)
reads 2 above and 3 below, the shallow one (two 8x8 stride-4) 1 and 1."""
ANALYSIS_HALO = 1
"""Latent rows (16 pixel rows each) above and below a strip of the analysis's first half (two
5x5 stride-2 convolutions) that reach its output rows."""
HYPER_HALO = 2
"""Hyper-latent rows above and below a strip of the hyper-synthesis that reach its latent rows
(two 5x5 stride-2 transposed convolutions, then a 3x3 convolution)."""
Y_CHUNK = 1 << 20
"""Latent values decoded per call of the rANS decoder (its index and value lists are Python
lists, 8 bytes per entry: decoded a chunk at a time they stay at 16 MB, whatever the image)."""


def strip_bounds(height: int, rows: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each strip of ``height`` latent rows: ceil(height / rows) strips as
    even as whole rows allow (each at most ``rows``)."""
    if rows < 1:
        raise ValueError(f"a strip needs at least one row, got {rows}")
    size = -(-height // -(-height // rows))
    return [(r, min(height, r + size)) for r in range(0, height, size)]


@dataclass
class RatConfig:
    """Sizes of a rat model (stored beside its weights)."""

    N: int = 64  # channels of the transforms and of the hyper-latent
    M: int = 96  # channels of the latent
    lambdas: tuple[float, ...] = (0.004, 0.008, 0.016, 0.032)  # MSE weight per rate point (x 255^2)
    use_rat: bool = True  # region-adaptive transforms in the analysis and synthesis
    shallow_channels: int = 0  # 0: no shallow synthesis

    @property
    def n_rates(self) -> int:
        return len(self.lambdas)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lambdas"] = list(self.lambdas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RatConfig:
        known = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in known}
        if "lambdas" in kw:
            kw["lambdas"] = tuple(float(x) for x in kw["lambdas"])
        return cls(**kw)


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round with a straight-through gradient (the decoder trains on what it will see)."""
    return x + (torch.round(x) - x).detach()


class ShallowSynthesis(nn.Module):
    """Two transposed convolutions (x4, x4) with an inverse GDN between: latent -> RGB."""

    def __init__(self, M: int, channels: int, n_rates: int) -> None:
        super().__init__()
        self.inv_gain = nn.Parameter(torch.ones(n_rates, M))
        self.up1 = nn.ConvTranspose2d(M, channels, 8, stride=4, padding=2)
        self.act = GDN(channels, inverse=True)
        self.up2 = nn.ConvTranspose2d(channels, 3, 8, stride=4, padding=2)

    def forward(self, y_hat: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return self.up2(self.act(self.up1(y_hat * self.inv_gain[q][:, :, None, None])))


@dataclass
class Compressed:
    """What ``RatModel.compress`` returns for one image."""

    y_string: bytes
    z_string: bytes
    z_shape: tuple[int, int]
    extra: dict[str, Any] = field(default_factory=dict)


class RatModel(CompressionModel):
    """Mean-scale hyperprior with region-adaptive transforms and gain units (see module doc)."""

    def __init__(self, config: RatConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or RatConfig()
        N, M = cfg.N, cfg.M
        self.g_a1 = nn.Sequential(conv(3, N), GDN(N), conv(N, N), GDN(N))
        self.g_a2 = nn.Sequential(conv(N, N), GDN(N), conv(N, M))
        self.g_s1 = nn.Sequential(deconv(M, N), GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True))
        self.g_s2 = nn.Sequential(deconv(N, N), GDN(N, inverse=True), deconv(N, 3))
        self.rat_a = RegionAdaptiveTransform(N) if cfg.use_rat else None
        self.rat_s = RegionAdaptiveTransform(N) if cfg.use_rat else None
        self.h_a = nn.Sequential(conv(M, N, 3, 1), nn.LeakyReLU(inplace=True), conv(N, N),
                                 nn.LeakyReLU(inplace=True), conv(N, N))
        self.h_s = nn.Sequential(deconv(N, M), nn.LeakyReLU(inplace=True), deconv(M, M * 3 // 2),
                                 nn.LeakyReLU(inplace=True), conv(M * 3 // 2, M * 2, 3, 1))
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(None)
        lam = torch.tensor(cfg.lambdas)
        init = torch.sqrt(lam / lam[-1])[:, None].expand(cfg.n_rates, M)
        self.gain = nn.Parameter(init.clone())
        self.inv_gain = nn.Parameter(1.0 / init.clone())
        self.shallow = (ShallowSynthesis(M, cfg.shallow_channels, cfg.n_rates)
                        if cfg.shallow_channels else None)
        self._cache: dict[str, nn.Module] = {}  # float64 hyper-synthesis (not a submodule)

    # ------------------------------------------------------------ transforms

    def _labels(self, labels: torch.Tensor | None, feat: torch.Tensor) -> torch.Tensor | None:
        if labels is None or not self.config.use_rat:
            return None
        return downsample_labels(labels, feat.shape[-2], feat.shape[-1])

    def analysis(self, x: torch.Tensor, q: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Image (B, 3, H, W) in [0, 1] -> gained latent y (B, M, H/16, W/16)."""
        h = self.g_a1(x)
        if self.rat_a is not None:
            h = self.rat_a(h, self._labels(labels, h))
        return self.g_a2(h) * self.gain[q][:, :, None, None]

    def synthesis(self, y_hat: torch.Tensor, q: torch.Tensor, labels: torch.Tensor | None = None,
                  decoder: str = "full") -> torch.Tensor:
        """Quantized gained latent -> image (B, 3, 16h, 16w), unclamped."""
        if decoder == "shallow":
            if self.shallow is None:
                raise ValueError("this model has no shallow decoder")
            return self.shallow(y_hat, q)
        h = self.g_s1(y_hat * self.inv_gain[q][:, :, None, None])
        if self.rat_s is not None:
            h = self.rat_s(h, self._labels(labels, h))
        return self.g_s2(h)

    @torch.no_grad()
    def analysis_strips(self, image_rows: Callable[[int, int], torch.Tensor], height: int, width: int,
                        q: torch.Tensor, cell: int | None = None, rows: int | None = None) -> torch.Tensor:
        """:meth:`analysis` of a ``height`` x ``width`` image (multiples of 64) whose rows
        ``a:b`` ``image_rows(a, b)`` gives as (1, 3, b - a, width) floats, with the regions of a
        grid of ``cell``-pixel squares (None: one region), in strips of at most ``rows`` latent
        rows (None, or at least height / 16: the whole image at once, as :meth:`analysis`).

        The first half (g_a1, to 1/4 scale, most of the work) runs strip by strip, each from its
        rows and ANALYSIS_HALO latent rows (16 pixels each) more each side, into a buffer of its
        output (N floats per 16 pixels: 16 bytes a pixel at N = 64); the RAT's region centers
        are summed from it, then the RAT and the second half run strip by strip with the rows
        they read. The image is never held in floats whole.
        """
        hy, wy = height // 16, width // 16
        if rows is None or rows >= hy:
            labels = None if cell is None else grid_labels(height, width, cell)[None]
            return self.analysis(image_rows(0, height), q, labels)
        bounds = strip_bounds(hy, rows)
        hq, wq = 4 * hy, 4 * wy
        h = None
        for r0, r1 in bounds:
            s0, s1 = max(0, r0 - ANALYSIS_HALO), min(hy, r1 + ANALYSIS_HALO)
            t = self.g_a1(image_rows(16 * s0, 16 * s1))
            if h is None:
                h = t.new_empty(1, t.shape[1], hq, wq)
            h[:, :, 4 * r0 : 4 * r1] = t[:, :, 4 * (r0 - s0) : 4 * (r1 - s0)]
            del t

        def labels_at(t0: int, t1: int) -> torch.Tensor:
            if cell is None:
                return torch.zeros(1, t1 - t0, wq, dtype=torch.long, device=h.device)
            return grid_labels_at(hq, wq, cell, 4, t0, t1).to(h.device)[None]

        centers = None
        if self.rat_a is not None:
            k = 1 if cell is None else int(grid_labels_at(hq, wq, cell, 4, hq - 1, hq)[0, -1]) + 1
            sums, counts = h.new_zeros(1, k, h.shape[1]), h.new_zeros(1, k)
            for r0, r1 in bounds:
                self.rat_a.add_to_centers(h[:, :, 4 * r0 : 4 * r1], labels_at(4 * r0, 4 * r1), sums, counts)
            centers = sums / counts.clamp_min(1.0)[..., None]
        y = h.new_empty(1, self.config.M, hy, wy)
        gain = self.gain[q][:, :, None, None]
        for r0, r1 in bounds:
            e0, e1 = max(0, 4 * r0 - 8), min(hq, 4 * r1 + 4)  # the rows g_a2 reads (e0 = 0 mod 4)
            if self.rat_a is not None:
                t0, t1 = max(0, e0 - 1), min(hq, e1 + 1)
                g = self.rat_a.modulate(h[:, :, t0:t1], labels_at(t0, t1), centers)[:, :, e0 - t0 : e1 - t0]
            else:
                g = h[:, :, e0:e1]
            y[:, :, r0:r1] = (self.g_a2(g) * gain)[:, :, r0 - e0 // 4 : r1 - e0 // 4]
            del g
        return y

    @torch.no_grad()
    def synthesis_strips(self, y_hat: torch.Tensor, q: torch.Tensor, cell: int | None = None,
                         decoder: str = "full",
                         rows: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        """The synthesis of ``y_hat`` (B, M, hy, wy) with the regions of a grid of ``cell``-pixel
        squares (None: one region), in horizontal strips of at most ``rows`` latent rows: yields
        (first image row, image rows (B, 3, 16 r, 16 wy)) top to bottom. Peak memory follows the
        strip, not the image: each strip is synthesized from its latent rows and
        SYNTHESIS_HALO more each side, and the intermediate rows are cropped to what the next
        layer reads. The RAT's region centers (means over whole regions, which may span strips)
        are summed over the strips first, in a pass that runs the first half of the synthesis
        (g_s1) once more.

        ``rows`` None, or at least hy: one strip, which is :meth:`synthesis` on the whole latent
        (the same pixels as ever). Strips give the same pixels up to float rounding (the
        convolutions see other shapes; the centers are summed in another order), so the strip
        height is part of the decoder's definition: the codec derives it from the frame size.
        """
        hy, wy = y_hat.shape[-2:]
        if rows is None or rows >= hy:
            labels = None if cell is None else grid_labels(16 * hy, 16 * wy, cell, y_hat.device)[None]
            yield 0, self.synthesis(y_hat, q, labels, decoder)
            return
        if decoder == "shallow" and self.shallow is None:
            raise ValueError("this model has no shallow decoder")
        bounds = strip_bounds(hy, rows)
        halo = SYNTHESIS_HALO

        def around(r0: int, r1: int) -> tuple[int, int]:
            return max(0, r0 - halo), min(hy, r1 + halo)

        if decoder == "shallow":
            for r0, r1 in bounds:
                s0, s1 = around(r0, r1)
                yield 16 * r0, self.shallow(y_hat[:, :, s0:s1], q)[:, :, 16 * (r0 - s0) : 16 * (r1 - s0)]
            return
        b = y_hat.shape[0]
        hq, wq = 4 * hy, 4 * wy  # the RAT's scale
        inv_gain = self.inv_gain[q][:, :, None, None]

        def g_s1(s0: int, s1: int) -> torch.Tensor:  # latent rows s0:s1 -> rows 4 s0:4 s1 at 1/4
            return self.g_s1(y_hat[:, :, s0:s1] * inv_gain)

        def labels(t0: int, t1: int) -> torch.Tensor:  # the regions of rows t0:t1 at 1/4
            if cell is None:
                return torch.zeros(b, t1 - t0, wq, dtype=torch.long, device=y_hat.device)
            return grid_labels_at(hq, wq, cell, 4, t0, t1).to(y_hat.device).expand(b, t1 - t0, wq)

        centers = None
        if self.rat_s is not None:
            k = 1 if cell is None else int(grid_labels_at(hq, wq, cell, 4, hq - 1, hq)[0, -1]) + 1
            sums = y_hat.new_zeros(b, k, self.rat_s.channels)
            counts = y_hat.new_zeros(b, k)
            for r0, r1 in bounds:
                s0, s1 = around(r0, r1)
                h = g_s1(s0, s1)[:, :, 4 * (r0 - s0) : 4 * (r1 - s0)]
                self.rat_s.add_to_centers(h, labels(4 * r0, 4 * r1), sums, counts)
                del h
            centers = sums / counts.clamp_min(1.0)[..., None]
        for r0, r1 in bounds:
            s0, s1 = around(r0, r1)
            h = g_s1(s0, s1)
            u0, u1 = max(0, 4 * r0 - 1), min(hq, 4 * r1 + 2)  # the rows g_s2 reads
            if self.rat_s is not None:
                t0, t1 = max(0, u0 - 1), min(hq, u1 + 1)  # the rows the RAT reads
                h = self.rat_s.modulate(h[:, :, t0 - 4 * s0 : t1 - 4 * s0],
                                        labels(t0, t1), centers)[:, :, u0 - t0 : u1 - t0]
            else:
                h = h[:, :, u0 - 4 * s0 : u1 - 4 * s0]
            x = self.g_s2(h)
            del h
            yield 16 * r0, x[:, :, 16 * r0 - 4 * u0 : 16 * r1 - 4 * u0]

    def entropy_params(self, z_hat: torch.Tensor, exact: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(scales, means) of the latent from the hyper-latent.

        ``exact=True`` (the coding path) evaluates the hyper-synthesis in float64: the scales
        pick CDF tables by comparison with a fixed table, and the encoder and decoder must pick
        the same one even on machines whose float32 convolutions round differently.
        """
        if not exact:
            scales, means = self.h_s(z_hat).chunk(2, 1)
            return scales, means
        if "h_s64" not in self._cache:
            self._cache["h_s64"] = copy.deepcopy(self.h_s).double().eval()
        with torch.no_grad():
            scales, means = self._cache["h_s64"](z_hat.double()).chunk(2, 1)
        return scales, means.float()

    def entropy_indexes(self, z_hat: torch.Tensor,
                        rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(int32 CDF table indexes, float32 means) of the latent from the hyper-latent ``z_hat``,
        by the float64 hyper-synthesis (:meth:`entropy_params` ``exact=True``), in horizontal
        strips of at most ``rows`` hyper-latent rows (None, or at least its height: whole).

        Its float64 convolutions need ~50 bytes per image pixel (their im2col buffers): strips
        bound that. Each strip is computed from its rows and HYPER_HALO more each side, every
        intermediate cropped to the rows the next layer reads; the scales become indexes strip
        by strip, so the full float64 scales never exist. The encoder and the decoder call this
        with the same ``rows`` (from the frame size), so they pick the same tables.
        """
        hz, wz = z_hat.shape[-2:]
        if rows is None or rows >= hz:
            scales, means = self.entropy_params(z_hat, exact=True)
            return self.gaussian_conditional.build_indexes(scales), means
        self.entropy_params(z_hat[:, :, :1, :1], exact=True)  # builds the float64 copy
        h_s = self._cache["h_s64"]
        b, m = z_hat.shape[0], self.config.M
        indexes = torch.empty(b, m, 4 * hz, 4 * wz, dtype=torch.int32, device=z_hat.device)
        means = torch.empty(b, m, 4 * hz, 4 * wz, dtype=torch.float32, device=z_hat.device)
        with torch.no_grad():
            for r0, r1 in strip_bounds(hz, rows):
                s0, s1 = max(0, r0 - HYPER_HALO), min(hz, r1 + HYPER_HALO)
                t = h_s[1](h_s[0](z_hat[:, :, s0:s1].double()))  # rows 2 s0:2 s1 at 1/32
                a0, a1 = max(0, 2 * r0 - 1), min(2 * hz, 2 * r1 + 2)
                t = h_s[3](h_s[2](t[:, :, a0 - 2 * s0 : a1 - 2 * s0]))  # rows 2 a0:2 a1 at 1/16
                c0, c1 = max(0, 4 * r0 - 1), min(4 * hz, 4 * r1 + 1)
                t = h_s[4](t[:, :, c0 - 2 * a0 : c1 - 2 * a0])[:, :, 4 * r0 - c0 : 4 * r1 - c0]
                scales, mu = t.chunk(2, 1)
                indexes[:, :, 4 * r0 : 4 * r1] = self.gaussian_conditional.build_indexes(scales)
                means[:, :, 4 * r0 : 4 * r1] = mu
                del t, scales, mu
        return indexes, means

    def train(self, mode: bool = True) -> RatModel:
        self._cache.clear()  # weights may change: rebuild the float64 copy on the next coding call
        return super().train(mode)

    # ------------------------------------------------------------ training

    def forward(self, x: torch.Tensor, q: torch.Tensor, labels: torch.Tensor | None = None,
                decoder: str = "full") -> dict[str, Any]:
        """Training pass: noisy latents for the likelihoods, rounded ones (straight-through) for
        the synthesis. ``q`` is the rate index of each image (B,), ``labels`` (B, H, W) region ids."""
        y = self.analysis(x, q, labels)
        z = self.h_a(y)
        _, z_likelihoods = self.entropy_bottleneck(z)
        medians = self.entropy_bottleneck._get_medians().view(1, -1, 1, 1)
        z_hat = ste_round(z - medians) + medians
        scales, means = self.entropy_params(z_hat)
        _, y_likelihoods = self.gaussian_conditional(y, scales, means)
        y_hat = ste_round(y - means) + means
        x_hat = self.synthesis(y_hat, q, labels, decoder)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}, "y_hat": y_hat}

    # ------------------------------------------------------------ coding

    def update(self, scale_table: torch.Tensor | None = None, force: bool = False,
               update_quantiles: bool = False) -> bool:
        """Build the CDF tables (CompressAI's 64 log-spaced scales from 0.11 to 256)."""
        return super().update(get_scale_table() if scale_table is None else scale_table, force,
                              update_quantiles)

    def compress(self, x: torch.Tensor, q: int, labels: torch.Tensor | None = None,
                 hyper_rows: int | None = None, y: torch.Tensor | None = None) -> Compressed:
        """One image (1, 3, H, W), H and W multiples of 64 -> rANS strings of y and z.
        ``hyper_rows``: the strip height of :meth:`entropy_indexes` (the decoder's). ``y``: the
        latent, already computed (then ``x`` and ``labels`` are not read)."""
        if y is None and (x.shape[0] != 1 or x.shape[-2] % STRIDE or x.shape[-1] % STRIDE):
            raise ValueError(f"compress wants one image padded to a multiple of {STRIDE}")
        with torch.no_grad():
            if y is None:
                y = self.analysis(x, torch.tensor([q], device=x.device), labels)
            z = self.h_a(y)
            z_strings = self.entropy_bottleneck.compress(z)
            z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
            indexes, means = self.entropy_indexes(z_hat, hyper_rows)
            y_strings = self.gaussian_conditional.compress(y, indexes, means=means)
        return Compressed(y_strings[0], z_strings[0], (int(z.shape[-2]), int(z.shape[-1])))

    def decode_latent(self, y_string: bytes, z_string: bytes, z_shape: tuple[int, int],
                      hyper_rows: int | None = None) -> torch.Tensor:
        """rANS strings -> the quantized gained latent y_hat (1, M, 4 zh, 4 zw). The latent is
        rANS-decoded Y_CHUNK values at a time (the same values as CompressAI's
        ``GaussianConditional.decompress``, which holds every index and value in Python lists)."""
        from compressai import ans

        gc = self.gaussian_conditional
        with torch.no_grad():
            z_hat = self.entropy_bottleneck.decompress([z_string], z_shape)
            indexes, means = self.entropy_indexes(z_hat, hyper_rows)
            del z_hat
            gc._check_cdf_size()
            gc._check_cdf_length()
            gc._check_offsets_size()
            cdf = gc._quantized_cdf.tolist()
            cdf_length = gc._cdf_length.reshape(-1).int().tolist()
            offset = gc._offset.reshape(-1).int().tolist()
            flat = indexes.reshape(-1)
            values = torch.empty(flat.numel(), dtype=gc._quantized_cdf.dtype)
            decoder = ans.RansDecoder()
            decoder.set_stream(y_string)
            for a in range(0, flat.numel(), Y_CHUNK):
                chunk = decoder.decode_stream(flat[a : a + Y_CHUNK].tolist(), cdf, cdf_length, offset)
                values[a : a + len(chunk)] = torch.tensor(chunk, dtype=values.dtype)
            del indexes, flat
            return gc.dequantize(values.view(means.shape), means)

    def decompress(self, y_string: bytes, z_string: bytes, z_shape: tuple[int, int], q: int,
                   labels: torch.Tensor | None = None, decoder: str = "full") -> torch.Tensor:
        """rANS strings -> reconstruction (1, 3, 64 zh, 64 zw), clamped to [0, 1]."""
        y_hat = self.decode_latent(y_string, z_string, z_shape)
        with torch.no_grad():
            return self.synthesis(y_hat, torch.tensor([q]), labels, decoder).clamp_(0.0, 1.0)


def rate_distortion(out: dict[str, Any], x: torch.Tensor, lambdas: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image bpp and MSE, and the mean of lambda * 255^2 * MSE + bpp (lambdas per image)."""
    b, _, h, w = x.shape
    bits = sum((-torch.log2(lk)).reshape(b, -1).sum(1) for lk in out["likelihoods"].values())
    bpp = bits / (h * w)
    mse = ((out["x_hat"] - x) ** 2).reshape(b, -1).mean(1)
    loss = (lambdas * 255.0**2 * mse + bpp).mean()
    psnr = (10 * torch.log10(1.0 / mse.clamp_min(1e-10))).mean()
    return {"loss": loss, "bpp": bpp.mean(), "mse": mse.mean(), "psnr": psnr}


def count_parameters(module: nn.Module) -> int:
    """Number of learnable parameters (for the docs)."""
    return sum(p.numel() for p in module.parameters())
