"""The tokens codec: tiles -> 1D token prefixes of content-chosen length -> rANS (docs/format.md).

The image is padded (edge replication) to whole tiles of the tokenizer (64 px); every tile is
tokenized into K ids, of which the encoder keeps the first k_t. The k_t are chosen from the
content: each tile's distortion is measured at a ladder of token counts, and a Lagrangian
allocation (bisection on the slope) picks the k_t that minimise total squared error for the
rate target (``--bpp``) or a slope set by ``--quality``. ``-O alloc=uniform`` spreads the tokens
evenly instead (the comparison the issue asks for).

Frame payload = chunks:
    HEAD  version u8, model id u8, positions u8 (J: token positions present, 1 <= J <= K),
          alloc u8 (0 adaptive, 1 uniform; informational)
    KS    the per-tile k_t (raster order), dappled.entropy categorical stream, values 1..K
    TOKS  one rANS string, token-position-major: for j < J, for tiles with min(k_t, J) > j in
          raster order, the id of token j under the shipped prior of position j

The decoder keeps min(k_t, J) tokens of tile t. The ids are in position-major order and rANS
decodes from the front of its string, so the first symbols need only a prefix of the string:
:func:`truncate_payload` cuts a stream after its first j positions (J := j, TOKS cut where the
decoder has read everything those positions need), and the result decodes to the image from
the first min(k_t, j) tokens of every tile: progressive decoding, no side information.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections import OrderedDict
from typing import Any, ClassVar

import numpy as np

from dappled.codec.chunks import pack_chunks, require, unpack_chunks
from dappled.codec.container import (
    HEADER_SIZE,
    KEYFRAME,
    PACKET_HEADER_SIZE,
    Packet,
    PacketType,
    StreamHeader,
)
from dappled.codec.defaults import DEFAULT_QUALITY, IMAGE_CONTAINER_BYTES, image_payload_budget
from dappled.codec.registry import Budget, Codec, EncodeParams
from dappled.errors import BitstreamError, InputError, LimitError, OptionError, UnsupportedError

PAYLOAD_VERSION = 1
_HEAD = struct.Struct("<BBBB")
ALLOC_IDS = {"adaptive": 0, "uniform": 1}
# 4096 x 4096 at most: 4096 tiles of 64 px; decoding batches tiles, so memory stays small.
MAX_PIXELS = 1 << 24
# What a stream can justify: every tile costs a network decode, and holds at least one token of
# a few bits (flat images: ~1 tile per byte), so a stream may not declare more tiles than this
# many per byte of its token payload.
MAX_TILES_PER_BYTE = 16
BATCH = 256  # tiles per network call (larger calls run faster; ~100 MB of activations)
# Token counts at which the encoder measures each tile's distortion (adaptive allocation picks
# among these; the ladder is denser where the distortion falls fastest).
K_LADDER = (1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64)
# --quality q sets the Lagrangian slope (squared error in 8-bit units per bit) to
# QUALITY_SLOPE[0] * QUALITY_SLOPE[1] ** -(q - 1): higher quality, cheaper bits, more tokens.
QUALITY_SLOPE = (64000.0, 2.0)  # q 1..8: about 0.02..0.17 bpp on Kodak
BPP_POINTS = (0.02, 0.15)
# Container bytes around the payload of an image: stream header, FRAME and END packet headers.
FRAMING = HEADER_SIZE + 2 * PACKET_HEADER_SIZE  # the rate range the sweeps cover (rd_points)


def _model(model_id: int) -> Any:
    from dappled.models.tokens.store import load_shipped

    try:
        return load_shipped(model_id)
    except FileNotFoundError as exc:
        raise OptionError(str(exc)) from None


def tile_grid(height: int, width: int, tile: int) -> tuple[int, int]:
    """(rows, columns) of tiles covering the frame."""
    return -(-height // tile), -(-width // tile)


def split_tiles(image: np.ndarray, tile: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (N, 3, T, T) float32 in [0, 1], border tiles padded by edge replication."""
    h, w = image.shape[:2]
    rows, cols = tile_grid(h, w, tile)
    padded = np.pad(image, ((0, rows * tile - h), (0, cols * tile - w), (0, 0)), mode="edge")
    t = padded.reshape(rows, tile, cols, tile, 3).transpose(0, 2, 4, 1, 3).reshape(-1, 3, tile, tile)
    return t.astype(np.float32) / 255.0


def join_tiles(tiles: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, 3, T, T) uint8 -> the (H, W, 3) frame (crops the padding)."""
    tile = tiles.shape[-1]
    rows, cols = tile_grid(height, width, tile)
    img = tiles.reshape(rows, cols, 3, tile, tile).transpose(0, 3, 1, 4, 2)
    img = img.reshape(rows * tile, cols * tile, 3)
    return np.ascontiguousarray(img[:height, :width])


def decode_tiles(model: Any, ids: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Token ids (N, K) and kept counts (N,) -> tiles (N, 3, T, T) uint8 (CPU, batched)."""
    import torch

    out = []
    with torch.inference_mode():
        for s in range(0, len(k), BATCH):
            x = model.decode(torch.from_numpy(ids[s:s + BATCH]), torch.from_numpy(k[s:s + BATCH]))
            out.append((x * 255.0).round().to(torch.uint8).numpy())
    return np.concatenate(out) if out else np.zeros((0, 3, model.config.tile, model.config.tile), np.uint8)


# ---------------------------------------------------------------------------- rANS prefix cuts


def prefix_lengths(payload: bytes, symbols: np.ndarray, indexes: np.ndarray, tables: list[Any],
                   ends: list[int]) -> list[int]:
    """Bytes of ``payload`` the rANS decoder reads to decode the first ``e`` symbols, per e in ``ends``.

    Replays CompressAI's Rans64 decoder (64-bit state, 32-bit words, 16-bit precision) on the
    known symbols: init reads two words, each symbol reads one more when the state drops below
    2**31 (after the symbol is known, so the word read by the e-th symbol is not needed).
    Decoding with only that prefix (zero padded, trailing zeros dropped) gives the same first
    ``e`` symbols.
    """
    n_words = -(-len(payload) // 4) + 2
    buf = payload + bytes(4 * n_words - len(payload))
    words = np.frombuffer(buf, dtype="<u4").tolist()
    x = words[0] | (words[1] << 32)
    ptr = 2
    cdfs = [t.cdf for t in tables]
    out = []
    e_iter = iter(ends)
    nxt = next(e_iter, None)
    syms = symbols.tolist()
    idxs = indexes.tolist()
    i = 0
    needed = 2  # words the symbols decoded so far depend on
    while nxt is not None:
        while i < nxt:
            cdf = cdfs[idxs[i]]
            s = syms[i]
            start = cdf[s]
            needed = ptr  # the word a symbol's renormalisation reads only matters to later ones
            x = (cdf[s + 1] - start) * (x >> 16) + (x & 0xFFFF) - start
            if x < (1 << 31):
                x = (x << 32) | (words[ptr] if ptr < len(words) else 0)
                ptr += 1
            i += 1
        cut = min(4 * needed, len(payload))
        while cut and payload[cut - 1] == 0:
            cut -= 1
        out.append(cut)
        nxt = next(e_iter, None)
    return out


def _order(k: np.ndarray, positions: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Position-major (tile, position) pairs of the kept tokens and the symbol count after each position."""
    tiles, pos, ends = [], [], []
    for j in range(positions):
        t = np.nonzero(k > j)[0]
        tiles.append(t)
        pos.append(np.full(t.size, j, np.int64))
        ends.append((ends[-1] if ends else 0) + int(t.size))
    return np.concatenate(tiles), np.concatenate(pos), ends


def pack_payload(model_id: int, alloc: int, ids: np.ndarray, k: np.ndarray, tables: list[Any]) -> bytes:
    """The frame payload (module doc) for token ids (N, K) with k[t] kept per tile."""
    from dappled.entropy import encode_symbols
    from dappled.entropy.rans import rans_encode

    positions = int(k.max())
    tiles, pos, _ = _order(k, positions)
    symbols = ids[tiles, pos]
    toks = rans_encode(symbols, pos, tables)
    head = _HEAD.pack(PAYLOAD_VERSION, model_id, positions, alloc)
    return pack_chunks({"HEAD": head, "KS  ": encode_symbols(k), "TOKS": toks})


def _parse_head(head: bytes, max_positions: int) -> tuple[int, int, int, int]:
    """(version, model id, positions, alloc) of a HEAD chunk, validated."""
    if len(head) != _HEAD.size:
        raise BitstreamError("tokens header has the wrong size")
    version, model_id, positions, alloc = _HEAD.unpack(head)
    if version != PAYLOAD_VERSION:
        raise UnsupportedError(f"unsupported tokens payload version {version}")
    if not 1 <= positions <= max_positions:
        raise BitstreamError(f"tokens stream declares {positions} token positions")
    return version, model_id, positions, alloc


def _read_payload(payload: bytes, height: int, width: int) -> tuple[Any, int, int, np.ndarray, np.ndarray,
                                                                     np.ndarray, np.ndarray]:
    """Parse and entropy-decode the payload of a height x width frame:
    (model, alloc, positions, k, tiles, pos, symbols)."""
    from dappled.entropy import decode_symbols
    from dappled.entropy.rans import rans_decode
    from dappled.models.tokens.store import MODELS

    head, ks, toks = require(unpack_chunks(payload), "HEAD", "KS  ", "TOKS")
    if len(head) == _HEAD.size and head[1] not in MODELS:
        raise UnsupportedError(f"unknown tokens model id {head[1]}")
    _, model_id, positions, alloc = _parse_head(head, 255)
    model = _model(model_id)
    max_k = model.config.tokens
    if positions > max_k:
        raise BitstreamError(f"tokens stream declares {positions} token positions")
    if height * width > MAX_PIXELS:
        raise LimitError(f"frame of {width}x{height} is over the tokens codec's limit of {MAX_PIXELS} pixels")
    rows, cols = tile_grid(height, width, model.config.tile)
    n_tiles = rows * cols
    if n_tiles > MAX_TILES_PER_BYTE * (len(toks) + 16):
        raise LimitError(f"tokens stream codes {n_tiles} tiles of {width}x{height} in {len(toks)} bytes "
                         f"(at most {MAX_TILES_PER_BYTE} per byte)")
    k = decode_symbols(ks, max_count=n_tiles)
    if k.size != n_tiles:
        raise BitstreamError(f"tokens stream has {k.size} token counts for {n_tiles} tiles")
    if k.min() < 1 or k.max() > max_k:
        raise BitstreamError("token count out of range (corrupted stream)")
    k = np.minimum(k, positions)
    if int(k.max()) != positions:
        raise BitstreamError("tokens stream declares more positions than any tile uses")
    tiles, pos, _ = _order(k, positions)
    try:
        symbols = rans_decode(toks, pos, model.tables)
    except ValueError as exc:
        raise BitstreamError(f"tokens entropy decoding failed ({exc})") from None
    return model, alloc, positions, k, tiles, pos, symbols


def truncate_payload(payload: bytes, positions: int, height: int, width: int) -> bytes:
    """The payload cut after its first ``positions`` token positions (every tile keeps at most
    that many tokens): the ids are decoded (no network runs) to find where the rANS decoder
    stops reading, and the string is cut there."""
    if positions < 1:
        raise OptionError("keep at least one token position")
    model, alloc, have, k, _, pos, symbols = _read_payload(payload, height, width)
    head, ks, toks = require(unpack_chunks(payload), "HEAD", "KS  ", "TOKS")
    j = min(positions, have)
    kept = int(np.minimum(k, j).sum())
    cut = prefix_lengths(toks, symbols, pos, model.tables, [kept])[0]
    new_head = _HEAD.pack(PAYLOAD_VERSION, head[1], j, alloc)
    return pack_chunks({"HEAD": new_head, "KS  ": ks, "TOKS": toks[:cut]})


def truncate_stream(data: bytes, positions: int) -> bytes:
    """Container bytes of a tokens image cut after ``positions`` token positions per tile."""
    from dappled.codec.api import parse
    from dappled.codec.container import pack

    c = parse(data)
    if c.header.codec_id != TokensCodec.codec_id:
        raise OptionError("not a tokens stream")
    h, w = c.header.height, c.header.width
    packets = [Packet(p.type, truncate_payload(p.payload, positions, h, w), p.frame, p.flags)
               if p.type == PacketType.FRAME else p for p in c.packets if p.type != PacketType.END]
    return pack(c.header, packets)


# ---------------------------------------------------------------------------- allocation


def lagrangian_choice(dist: np.ndarray, rate: np.ndarray, slope: float) -> np.ndarray:
    """Per tile, the ladder index minimising dist + slope * rate (ties: fewer tokens)."""
    return np.argmin(dist + slope * rate, axis=1)


def allocate_adaptive(dist: np.ndarray, rate: np.ndarray, budget_bits: float) -> np.ndarray:
    """Ladder index per tile minimising total distortion with total rate <= budget (bisection on
    the slope; the smallest rates if even they exceed the budget)."""
    lo, hi = 1e-6, 1e9  # slope: small -> many tokens, large -> few
    best = np.zeros(dist.shape[0], np.int64)
    if rate[np.arange(len(rate)), best].sum() > budget_bits:
        return best
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        choice = lagrangian_choice(dist, rate, mid)
        if rate[np.arange(len(rate)), choice].sum() <= budget_bits:
            best, hi = choice, mid
        else:
            lo = mid
        if hi / lo < 1.0001:
            break
    return best


def allocate_uniform(n_tiles: int, max_k: int, cum_rate: np.ndarray, budget_bits: float) -> np.ndarray:
    """The same token total for every tile (remainder to the first tiles), the largest total
    whose rate fits the budget (at least one token per tile)."""
    best = np.ones(n_tiles, np.int64)
    lo, hi = n_tiles, n_tiles * max_k
    while lo <= hi:
        total = (lo + hi) // 2
        k = np.full(n_tiles, total // n_tiles, np.int64)
        k[: total % n_tiles] += 1
        if cum_rate[np.arange(n_tiles), k].sum() <= budget_bits:
            best, lo = k, total + 1
        else:
            hi = total - 1
    return best


class _Analysis:
    """What the encoder knows about one image: ids, rate and distortion per tile and count."""

    def __init__(self, model: Any, image: np.ndarray) -> None:
        import torch

        c = model.config
        h, w = image.shape[:2]
        tiles = split_tiles(image, c.tile)
        n = len(tiles)
        net = model.model
        with torch.no_grad():
            self.ids = np.concatenate([net.encode(torch.from_numpy(tiles[s:s + BATCH])).numpy()
                                       for s in range(0, n, BATCH)])
        bits = model.bits[np.arange(c.tokens)[None, :], self.ids]  # (N, K)
        self.cum_rate = np.concatenate([np.zeros((n, 1)), np.cumsum(bits, 1)], 1)  # (N, K + 1)
        self.ladder = np.array(sorted({k for k in K_LADDER if k <= c.tokens} | {c.tokens}), np.int64)
        self._net, self._tiles, self._shape = net, tiles, (h, w)
        self._dist: np.ndarray | None = None
        self.rate = self.cum_rate[:, self.ladder]

    @property
    def dist(self) -> np.ndarray:
        """Squared error (8-bit units, inside the image) of every tile at every ladder count
        (N, len(ladder)); computed on first use (uniform allocation never needs it)."""
        if self._dist is None:
            self._dist = self._measure()
            self._tiles = None
        return self._dist

    def _measure(self) -> np.ndarray:
        net, tiles, (h, w) = self._net, self._tiles, self._shape
        assert tiles is not None
        c = net.config
        n = len(tiles)
        rows, cols = tile_grid(h, w, c.tile)
        valid = np.zeros((rows * c.tile, cols * c.tile), np.float32)
        valid[:h, :w] = 1.0
        valid = valid.reshape(rows, c.tile, cols, c.tile).transpose(0, 2, 1, 3)
        valid = valid.reshape(n, 1, c.tile, c.tile)
        ref = (tiles * 255.0).round()
        dist = np.zeros((n, len(self.ladder)))
        for li, kv in enumerate(self.ladder):
            rec = decode_tiles(net, self.ids, np.full(n, kv, np.int64)).astype(np.float32)
            dist[:, li] = (((rec - ref) ** 2) * valid).sum((1, 2, 3))
        return dist


_CACHE: OrderedDict[tuple[int, bytes], _Analysis] = OrderedDict()


def analyse(model_id: int, image: np.ndarray) -> _Analysis:
    """The analysis of an image (cached for the last 32 images, ~0.2 MB each: a sweep encodes
    every image of a data set at one rate, then all again at the next)."""
    key = (model_id, hashlib.sha256(image.tobytes() + str(image.shape).encode()).digest())
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    a = _Analysis(_model(model_id), image)
    _CACHE[key] = a
    while len(_CACHE) > 32:
        _CACHE.popitem(last=False)
    return a


class TokensCodec(Codec):
    """1D tokenizer codec with tail-token drop and content-adaptive token budgets (module doc)."""

    name = "tokens"
    codec_id = 3
    description = "1D image tokenizer (FSQ tokens, tail-token drop), content-adaptive tokens per tile"
    quality_range: ClassVar[tuple[int, int]] = (1, 8)
    default_quality = DEFAULT_QUALITY
    supports_bpp = True

    def rd_points(self, n: int) -> list[dict[str, Any]]:
        """n bpp targets spread geometrically over the low rates this codec is for (0.02..0.15)."""
        if n < 1:
            raise OptionError(f"number of rate points must be at least 1, got {n}")
        lo, hi = (math.log(b) for b in BPP_POINTS)
        if n == 1:
            return [{"bpp": 0.05}]
        return [{"bpp": round(math.exp(lo + (hi - lo) * i / (n - 1)), 4)} for i in range(n)]

    def parse_options(self, options: dict[str, Any]) -> tuple[int, str]:
        """(model id, allocation) from -O model=tokens, alloc=adaptive|uniform."""
        from dappled.models.tokens.store import MODEL_NAMES

        opts = dict(options)
        model = str(opts.pop("model", "tokens"))
        alloc = str(opts.pop("alloc", "adaptive"))
        if opts:
            raise OptionError(f"unknown tokens option(s): {', '.join(opts)} (known: model, alloc)")
        if model not in MODEL_NAMES:
            raise OptionError(f"tokens option model must be one of {', '.join(MODEL_NAMES)}, got {model!r}")
        if alloc not in ALLOC_IDS:
            raise OptionError(f"tokens option alloc must be adaptive or uniform, got {alloc!r}")
        return MODEL_NAMES[model], alloc

    def choose_k(self, a: _Analysis, alloc: str, params: EncodeParams,
                 budget_bits: float | None) -> np.ndarray:
        """Tokens per tile for a bit budget (``--bpp``) or the slope of ``--quality``."""
        n, max_k = len(a.ids), a.cum_rate.shape[1] - 1
        if budget_bits is None:
            q = self.resolve_quality(params)
            slope = QUALITY_SLOPE[0] * QUALITY_SLOPE[1] ** -(q - 1)
            choice = lagrangian_choice(a.dist, a.rate, slope)
            if alloc == "adaptive":
                return a.ladder[choice]
            total = int(a.ladder[choice].sum())
            k = np.full(n, total // n, np.int64)
            k[: total % n] += 1
            return np.clip(k, 1, max_k)
        if alloc == "adaptive":
            return a.ladder[allocate_adaptive(a.dist, a.rate, budget_bits)]
        return allocate_uniform(n, max_k, a.cum_rate, budget_bits)

    def encode_image(self, image: np.ndarray, params: EncodeParams) -> list[Packet]:
        """Tokenize every tile, pick k per tile, rANS code; one FRAME packet (CPU)."""
        model_id, alloc = self.parse_options(params.options)
        h, w = image.shape[:2]
        if h * w > MAX_PIXELS:
            raise InputError(f"image of {w}x{h} is over the tokens codec's limit of {MAX_PIXELS} pixels")
        model = _model(model_id)
        a = analyse(model_id, np.ascontiguousarray(image))
        if params.bpp is None:
            k = self.choose_k(a, alloc, params, None)
            return [Packet(PacketType.FRAME, pack_payload(model_id, ALLOC_IDS[alloc], a.ids, k, model.tables),
                           0, KEYFRAME)]
        # The container, chunk headers, k values and prefix lengths cost bytes outside the token
        # bits: shrink the token budget until the whole stream meets the target.
        target = 8 * (image_payload_budget(params.bpp, w, h) + IMAGE_CONTAINER_BYTES)
        budget = target - 8 * 60
        payload = b""
        for _ in range(8):
            k = self.choose_k(a, alloc, params, max(budget, 0.0))
            payload = pack_payload(model_id, ALLOC_IDS[alloc], a.ids, k, model.tables)
            total = 8 * (len(payload) + FRAMING)
            if total <= target or budget <= 0:
                break
            budget -= (total - target) + 16
        return [Packet(PacketType.FRAME, payload, 0, KEYFRAME)]

    decode_max_macs = 64_000 * MAX_PIXELS
    """Its decoder is fixed: the work is set by the pixels (MAX_PIXELS), memory is the limit."""

    def decode_budget(self, header: StreamHeader, packets: list[Packet]) -> Budget:
        """The shipped tokenizer's ViT decoder (32-pixel tiles, 96 tokens of width 128, 3 layers):
        about 55 kMAC per pixel, bounded at 64 k; memory: one batch of tiles (~100 MB of
        activations, bounded at 256 MB) and per pixel the token ids, uint8 tiles and output."""
        px = header.width * header.height
        return Budget(64_000 * px, (256 << 20) + 16 * px + 2 * sum(len(p.payload) for p in packets))

    def decode_image(self, header: StreamHeader, packets: list[Packet], device: str = "cpu") -> np.ndarray:
        """rANS decode the ids, run the tokenizer's decoder on every tile (CPU), crop."""
        frames = [p for p in packets if p.type == PacketType.FRAME]
        if len(frames) != 1:
            raise BitstreamError("tokens image stream needs exactly one frame packet")
        h, w = header.height, header.width
        model, _, _, k, tiles, pos, symbols = _read_payload(frames[0].payload, h, w)
        ids = np.zeros((len(k), model.config.tokens), np.int64)
        ids[tiles, pos] = symbols
        rec = decode_tiles(model.model, ids, k)
        return join_tiles(rec, h, w)
