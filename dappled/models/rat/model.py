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
from dappled.models.rat.regions import RegionAdaptiveTransform, downsample_labels

# Total stride of the analysis + hyper-analysis: images are padded to a multiple of it.
STRIDE = 64
DECODERS = ("full", "shallow")


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

    def compress(self, x: torch.Tensor, q: int, labels: torch.Tensor | None = None) -> Compressed:
        """One image (1, 3, H, W), H and W multiples of 64 -> rANS strings of y and z."""
        if x.shape[0] != 1 or x.shape[-2] % STRIDE or x.shape[-1] % STRIDE:
            raise ValueError(f"compress wants one image padded to a multiple of {STRIDE}")
        qt = torch.tensor([q], device=x.device)
        with torch.no_grad():
            y = self.analysis(x, qt, labels)
            z = self.h_a(y)
            z_strings = self.entropy_bottleneck.compress(z)
            z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
            scales, means = self.entropy_params(z_hat, exact=True)
            indexes = self.gaussian_conditional.build_indexes(scales)
            y_strings = self.gaussian_conditional.compress(y, indexes, means=means)
        return Compressed(y_strings[0], z_strings[0], (int(z.shape[-2]), int(z.shape[-1])))

    def decode_latent(self, y_string: bytes, z_string: bytes, z_shape: tuple[int, int]) -> torch.Tensor:
        """rANS strings -> the quantized gained latent y_hat (1, M, 4 zh, 4 zw)."""
        with torch.no_grad():
            z_hat = self.entropy_bottleneck.decompress([z_string], z_shape)
            scales, means = self.entropy_params(z_hat, exact=True)
            indexes = self.gaussian_conditional.build_indexes(scales)
            return self.gaussian_conditional.decompress([y_string], indexes, means=means)

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
