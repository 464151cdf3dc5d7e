"""A small 1D image tokenizer (TiTok family) with FSQ tokens and tail-token drop.

A ViT encoder reads the patches of a square tile together with K learned latent tokens; the
latent outputs are projected to a few dimensions and quantized by FSQ (finite scalar
quantization: each dimension rounded to one of ``levels[i]`` values, so a token is an integer
in ``[0, prod(levels))``). A ViT decoder rebuilds the tile from the first k tokens, with a
learned mask token in place of the rest, and a small convolution head smooths patch borders.
Training draws k at random per tile ("tail-token drop", One-D-Piece), so every prefix decodes to
a usable tile and the leading tokens carry the coarse content.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class TokenizerConfig:
    """Shape of the tokenizer (stored in weights files)."""

    tile: int = 64
    patch: int = 8
    width: int = 128
    heads: int = 4
    enc_layers: int = 3
    dec_layers: int = 3
    mlp_ratio: int = 3
    tokens: int = 64  # K, the most tokens a tile can have
    levels: tuple[int, ...] = (8, 5, 5, 5)
    head_channels: int = 16
    # Linear shortcuts around both transformers (tile -> codes, kept codes -> features): a
    # PCA-like path that learns in a few hundred steps and orders the tokens by importance
    # under tail-token drop; the transformers refine it.
    skip: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def codebook(self) -> int:
        """Number of distinct token ids."""
        return math.prod(self.levels)

    @property
    def n_patches(self) -> int:
        return (self.tile // self.patch) ** 2

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["levels"] = list(self.levels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TokenizerConfig:
        d = dict(d)
        d["levels"] = tuple(int(v) for v in d["levels"])
        d.setdefault("skip", False)  # files written before the shortcuts existed
        return cls(**d)


class FSQ(nn.Module):
    """Finite scalar quantization with a straight-through estimator; ids in [0, prod(levels))."""

    def __init__(self, levels: tuple[int, ...]) -> None:
        super().__init__()
        lv = torch.tensor(levels, dtype=torch.float32)
        self.register_buffer("levels", lv, persistent=False)
        basis = torch.cumprod(torch.tensor((1, *levels[:-1]), dtype=torch.int64), 0)
        self.register_buffer("basis", basis, persistent=False)

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash to (-(L-1)/2, (L-1)/2) per dimension (offset by half a step for even L)."""
        half = (self.levels - 1) * (1 - 1e-3) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half)
        return torch.tanh(z + shift) * half - offset

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Quantized values (integers shifted to be centred), straight-through gradient."""
        zb = self.bound(z)
        return zb + (torch.round(zb) - zb).detach()

    def to_ids(self, q: torch.Tensor) -> torch.Tensor:
        """Quantized values -> integer ids."""
        digits = (q + (self.levels // 2)).round().long()
        return (digits * self.basis).sum(-1)

    def from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Integer ids -> quantized values."""
        digits = (ids.long()[..., None] // self.basis) % self.levels.long()
        return digits.float() - (self.levels // 2)

    def ids(self, z: torch.Tensor) -> torch.Tensor:
        """Encoder output -> token ids (no gradient)."""
        return self.to_ids(torch.round(self.bound(z)))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, width: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(),
                                 nn.Linear(mlp_ratio * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, c))
        return x + self.mlp(self.norm2(x))


class Tokenizer(nn.Module):
    """Tile -> K token ids -> tile from any prefix of them (see module doc)."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        c = config
        if c.tile % c.patch:
            raise ValueError("tile must be a multiple of patch")
        self.config = c
        d, n, k = c.width, c.n_patches, c.tokens
        self.patch_embed = nn.Linear(3 * c.patch * c.patch, d)
        self.enc_pos = nn.Parameter(torch.randn(n, d) * 0.02)
        self.latent = nn.Parameter(torch.randn(k, d) * 0.02)
        self.encoder = nn.ModuleList(Block(d, c.heads, c.mlp_ratio) for _ in range(c.enc_layers))
        self.enc_norm = nn.LayerNorm(d)
        self.to_code = nn.Linear(d, len(c.levels))
        self.fsq = FSQ(c.levels)
        self.from_code = nn.Linear(len(c.levels), d)
        self.token_pos = nn.Parameter(torch.randn(k, d) * 0.02)
        self.mask = nn.Parameter(torch.randn(d) * 0.02)
        self.query = nn.Parameter(torch.randn(n, d) * 0.02)
        self.decoder = nn.ModuleList(Block(d, c.heads, c.mlp_ratio) for _ in range(c.dec_layers))
        self.dec_norm = nn.LayerNorm(d)
        self.to_pixels = nn.Linear(d, c.head_channels * c.patch * c.patch)
        n_codes = k * len(c.levels)
        self.enc_skip = nn.Linear(3 * c.tile * c.tile, n_codes) if c.skip else None
        self.dec_skip = nn.Linear(n_codes, c.head_channels * c.tile * c.tile) if c.skip else None
        self.head = nn.Sequential(nn.Conv2d(c.head_channels, c.head_channels, 3, padding=1), nn.GELU(),
                                  nn.Conv2d(c.head_channels, 3, 3, padding=1))

    # ------------------------------------------------------------------ encoder

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, T) -> (B, N, 3 p p)."""
        p = self.config.patch
        b = x.shape[0]
        t = F.unfold(x, p, stride=p)  # (B, 3pp, N)
        return t.transpose(1, 2).reshape(b, -1, 3 * p * p)

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Tiles in [0, 1] -> continuous pre-quantization codes (B, K, len(levels))."""
        b = x.shape[0]
        h = self.patch_embed(self.patchify(x - 0.5)) + self.enc_pos
        lat = self.latent.expand(b, -1, -1)
        h = torch.cat([h, lat], 1)
        for blk in self.encoder:
            h = blk(h)
        z = self.to_code(self.enc_norm(h[:, self.config.n_patches:]))
        if self.enc_skip is not None:
            z = z + self.enc_skip((x - 0.5).flatten(1)).view(z.shape)
        return z

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Tiles (B, 3, T, T) in [0, 1] -> token ids (B, K) int64."""
        return self.fsq.ids(self.encode_latent(x))

    # ------------------------------------------------------------------ decoder

    def decode_values(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Quantized codes (B, K, D) and kept counts k (B,) -> tiles (B, 3, T, T) (unclamped)."""
        c = self.config
        b = q.shape[0]
        keep = torch.arange(c.tokens, device=q.device)[None, :] < k[:, None]
        tok = torch.where(keep[..., None], self.from_code(q), self.mask) + self.token_pos
        h = torch.cat([tok, self.query.expand(b, -1, -1)], 1)
        for blk in self.decoder:
            h = blk(h)
        feats = self.to_pixels(self.dec_norm(h[:, c.tokens:]))  # (B, N, C p p)
        feats = F.fold(feats.transpose(1, 2), (c.tile, c.tile), c.patch, stride=c.patch)
        if self.dec_skip is not None:
            kept = torch.where(keep[..., None], q, 0.0).flatten(1)
            feats = feats + self.dec_skip(kept).view(feats.shape)
        return self.head(feats) + 0.5

    def decode(self, ids: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Token ids (B, K) (entries past k[b] are ignored) -> tiles (B, 3, T, T) in [0, 1]."""
        ids = ids.clamp(0, self.config.codebook - 1)
        return self.decode_values(self.fsq.from_ids(ids), k).clamp(0.0, 1.0)

    def forward(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Training pass: tiles and kept counts -> reconstruction (straight-through FSQ)."""
        return self.decode_values(self.fsq(self.encode_latent(x)), k)
