// Dappled stream decoding in the browser: container, chunks, categorical rANS (CompressAI's
// 64-bit rANS, bit-exact), Exp-Golomb positions, the splat payload and the splat video updates.
// A port of dappled/codec/{container,chunks,splat/format,splat/decoder,splat/video/*}.py and dappled/entropy/; every
// check the Python decoder makes is made here too, and a defect throws BitstreamError.

export class BitstreamError extends Error {
  constructor(msg) { super(msg); this.name = "BitstreamError"; }
}
export class TruncatedError extends BitstreamError {
  constructor(msg) { super(msg); this.name = "TruncatedError"; }
}

// ------------------------------------------------------------------ container

export const HEADER_SIZE = 32;
export const PACKET_HEADER_SIZE = 16;
export const PACKET = { CONFIG: 1, FRAME: 2, INDEX: 3, END: 4 };
const FORMAT_VERSION = 1;
const MAX_DIMENSION = 16384;
const MAX_PIXELS = 64 * 1024 * 1024;
const MAX_FRAMES = 10000000;
const MAX_PACKET_BYTES = 256 * 1024 * 1024;
export const SPLATV_CODEC_ID = 4;

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function u32(b, o) { return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16)) + b[o + 3] * 16777216; }
function i32(b, o) { return b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24); }
function u16(b, o) { return b[o] | (b[o + 1] << 8); }

export function parseHeader(b) {
  if (b.length < HEADER_SIZE) throw new TruncatedError(`stream too short for a header (${b.length} of ${HEADER_SIZE} bytes)`);
  if (b[0] !== 0x44 || b[1] !== 0x50 || b[2] !== 0x4c || b[3] !== 0x44) throw new BitstreamError("not a Dappled stream (bad magic bytes)");
  if (b[4] !== FORMAT_VERSION) throw new BitstreamError(`unsupported format version ${b[4]}`);
  if (crc32(b.subarray(0, 28)) !== u32(b, 28)) throw new BitstreamError("file header CRC mismatch (corrupted stream)");
  if (b[6] !== 0) throw new BitstreamError(`unknown color space ${b[6]}`);
  const h = {
    codecId: b[5], width: u32(b, 8), height: u32(b, 12), frameCount: u32(b, 16),
    fpsNum: u32(b, 20), fpsDen: u32(b, 24),
  };
  if (!(h.width >= 1 && h.width <= MAX_DIMENSION && h.height >= 1 && h.height <= MAX_DIMENSION) || h.width * h.height > MAX_PIXELS)
    throw new BitstreamError(`frame size ${h.width}x${h.height} outside the limits`);
  if (!(h.frameCount >= 1 && h.frameCount <= MAX_FRAMES)) throw new BitstreamError(`frame count ${h.frameCount} out of range`);
  if (h.fpsDen === 0) throw new BitstreamError("frame rate denominator is 0");
  h.fps = h.fpsNum / h.fpsDen;
  return h;
}

// Incremental packet parser: push() bytes as they arrive, next() returns packets in order
// (null when more bytes are needed). Packets carry their byte offset, for seeking.
export class StreamParser {
  constructor() {
    this.buf = new Uint8Array(1 << 16);
    this.len = 0; // bytes held
    this.pos = 0; // read position inside buf
    this.base = 0; // stream offset of buf[0]
    this.header = null;
    this.ended = false;
  }
  push(chunk) {
    if (this.len + chunk.length > this.buf.length) {
      const keep = this.len - this.pos;
      let size = this.buf.length;
      while (keep + chunk.length > size) size *= 2;
      const nb = new Uint8Array(size);
      nb.set(this.buf.subarray(this.pos, this.len));
      this.base += this.pos;
      this.buf = nb; this.len = keep; this.pos = 0;
    }
    this.buf.set(chunk, this.len);
    this.len += chunk.length;
  }
  get offset() { return this.base + this.pos; }
  next() {
    if (this.ended) return null;
    const avail = this.len - this.pos;
    if (!this.header) {
      if (avail < HEADER_SIZE) return null;
      this.header = parseHeader(this.buf.subarray(this.pos, this.pos + HEADER_SIZE));
      this.pos += HEADER_SIZE;
      return this.next();
    }
    if (avail < PACKET_HEADER_SIZE) return null;
    const b = this.buf, o = this.pos, offset = this.offset;
    const type = b[o], flags = b[o + 1], frame = u32(b, o + 4), length = u32(b, o + 8), crc = u32(b, o + 12);
    if (type < 1 || type > 4) throw new BitstreamError(`unknown packet type ${type} at byte ${offset}`);
    if (length > MAX_PACKET_BYTES) throw new BitstreamError(`packet length ${length} at byte ${offset} is over the cap`);
    if (frame >= this.header.frameCount) throw new BitstreamError(`packet for frame ${frame} but the stream has ${this.header.frameCount} frames`);
    if (avail < PACKET_HEADER_SIZE + length) return null;
    const payload = b.slice(o + PACKET_HEADER_SIZE, o + PACKET_HEADER_SIZE + length);
    if (crc32(payload) !== crc) throw new BitstreamError(`packet at byte ${offset} fails its CRC (corrupted stream)`);
    this.pos += PACKET_HEADER_SIZE + length;
    if (type === PACKET.END) this.ended = true;
    return { type, flags, keyframe: (flags & 1) === 1, frame, payload, offset };
  }
  // bytes received but not parsed into a packet yet (at the end of the stream: truncation)
  get pending() { return this.len - this.pos; }
}

// ------------------------------------------------------------------ chunks

export function unpackChunks(p) {
  if (!p.length) throw new TruncatedError("empty payload");
  const count = p[0];
  let pos = 1;
  const out = new Map();
  for (let i = 0; i < count; i++) {
    if (pos + 8 > p.length) throw new TruncatedError("payload ends inside a chunk header");
    const tag = String.fromCharCode(p[pos], p[pos + 1], p[pos + 2], p[pos + 3]);
    const length = u32(p, pos + 4);
    pos += 8;
    if (pos + length > p.length) throw new TruncatedError(`chunk '${tag}' declares ${length} bytes, payload ends first`);
    if ((p[pos - 8] | p[pos - 7] | p[pos - 6] | p[pos - 5]) & 0x80) throw new BitstreamError("chunk tag is not ASCII");
    if (out.has(tag)) throw new BitstreamError(`chunk '${tag}' appears twice`);
    out.set(tag, p.subarray(pos, pos + length));
    pos += length;
  }
  if (pos !== p.length) throw new BitstreamError(`${p.length - pos} stray bytes after the last chunk`);
  return out;
}

export function require(chunks, ...tags) {
  const missing = tags.filter((t) => !chunks.has(t));
  if (missing.length) throw new BitstreamError(`payload lacks chunk(s) ${missing.join(", ")}`);
  return tags.map((t) => chunks.get(t));
}

// ------------------------------------------------------------------ varints and bits

const SAFE = Number.MAX_SAFE_INTEGER;

class ByteReader {
  constructor(data, pos = 0) { this.data = data; this.pos = pos; }
  get remaining() { return this.data.length - this.pos; }
  uvarint(limit = SAFE) {
    let value = 0, mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.data.length) throw new TruncatedError("stream ends inside a varint");
      const byte = this.data[this.pos++];
      value += (byte & 0x7f) * mul;
      mul *= 128;
      if (!(byte & 0x80)) {
        if (value > SAFE) throw new BitstreamError("varint beyond the player's integer range");
        if (value > limit) throw new BitstreamError(`varint ${value} above its limit ${limit}`);
        return value;
      }
    }
    throw new BitstreamError("varint longer than 10 bytes");
  }
  svarint() { return unzigzag(this.uvarint()); }
  take(n) {
    if (n < 0 || n > this.remaining) throw new TruncatedError(`need ${n} bytes, ${this.remaining} left`);
    const out = this.data.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  rest() { const out = this.data.subarray(this.pos); this.pos = this.data.length; return out; }
}

function unzigzag(v) { return v % 2 === 0 ? v / 2 : -(v + 1) / 2; }

class BitReader {
  constructor(data, start = 0) { this.data = data; this.pos = 8 * start; this.end = 8 * data.length; }
  bit() { const b = (this.data[this.pos >> 3] >> (7 - (this.pos & 7))) & 1; this.pos++; return b; }
  read(n) {
    if (n === 0) return 0;
    if (this.pos + n > this.end) throw new TruncatedError("stream ends inside a bit field");
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 2 + this.bit();
    return v;
  }
  gamma() {
    let zeros = 0;
    for (;;) {
      if (this.pos >= this.end) throw new TruncatedError("stream ends inside a gamma code");
      if (this.bit()) { this.pos--; break; }
      zeros++;
      if (zeros >= 65) throw new BitstreamError("gamma code prefix too long");
    }
    if (zeros > 52) throw new BitstreamError("gamma code beyond the player's integer range");
    return this.read(zeros + 1);
  }
  bytePos() { return (this.pos + 7) >> 3; }
}

// ------------------------------------------------------------------ rANS (CompressAI, 64-bit state)

const TOTAL = 65536;
const MIN_CODED = 4;
const TWO32 = 4294967296;

export function maxPayloadBytes(count) {
  if (count <= 0) return 0;
  return 4 * (Math.floor(Math.max(count, MIN_CODED) / 2) + 2);
}

// Decode n symbols of one frequency table (freqs sum to 2**16) from a CompressAI rANS payload.
// The 64-bit state is kept as hi * 2**32 + lo with exact double arithmetic (all products < 2**53).
export function ransDecode(data, freqs, n) {
  if (data.length > maxPayloadBytes(n)) throw new BitstreamError(`rANS payload of ${data.length} bytes is too long for ${n} symbols`);
  if (data.length && data[data.length - 1] === 0) throw new BitstreamError("rANS payload ends with a zero byte");
  const out = new Int32Array(n);
  if (n === 0) return out;
  const k = freqs.length;
  const cdf = new Float64Array(k + 1);
  for (let i = 0; i < k; i++) cdf[i + 1] = cdf[i] + freqs[i];
  const lut = new Uint16Array(TOTAL);
  for (let s = 0; s < k; s++) lut.fill(s, cdf[s], cdf[s + 1]);
  const nwords = Math.max(n, MIN_CODED) + 2;
  const word = (i) => {
    const o = 4 * i;
    if (o + 3 < data.length) return u32(data, o);
    let v = 0;
    for (let j = 3; j >= 0; j--) v = v * 256 + (o + j < data.length ? data[o + j] : 0);
    return v;
  };
  let lo = word(0), hi = word(1), ptr = 2;
  for (let i = 0; i < n; i++) {
    const cum = lo & 0xffff; // lo < 2**32: the bit ops see it as int32, low 16 bits intact
    const s = lut[cum];
    out[i] = s;
    const start = cdf[s], freq = cdf[s + 1] - start;
    // x >> 16 = qhi * 2**32 + qlo
    const qhi = Math.floor(hi / 65536);
    const qlo = (hi % 65536) * 65536 + Math.floor(lo / 65536);
    const low = freq * qlo + cum - start; // exact, in (-2**16, 2**48 + 2**16)
    const carry = Math.floor(low / TWO32);
    lo = low - carry * TWO32;
    hi = freq * qhi + carry;
    if (hi === 0 && lo < 2147483648) { // x < 2**31: pull in one 32-bit word
      hi = lo;
      lo = ptr < nwords ? word(ptr) : 0;
      ptr++;
    }
  }
  return out;
}

// dappled.entropy.binary.BinaryDecoder: adaptive binary decisions over the numba rANS coder
// (dappled.entropy.rans_flat: the top bit of the second word masked, zero words past the end).
// The state is xhi * 2**32 + xlo, stepped as field.js's latent decoder steps it; every product
// is below 2**53. bit(ctx) adapts context ctx's probability of a 0 (16 bits) exactly as Python.
const BIN_SHIFT = 4, HALF = 32768;
export class BinaryDecoder {
  constructor(data, contexts) {
    if (data.length && data[data.length - 1] === 0) throw new BitstreamError("binary stream ends with a zero byte");
    this.p = new Int32Array(contexts).fill(HALF);
    this.nWords = Math.ceil(data.length / 4);
    this.words = new Float64Array(this.nWords);
    for (let i = 0; i < data.length; i++) this.words[i >> 2] += data[i] * 2 ** (8 * (i & 3));
    this.xlo = this.nWords > 0 ? this.words[0] : 0;
    this.xhi = this.nWords > 1 ? this.words[1] % 2147483648 : 0;
    this.ptr = 2;
  }
  take(cs, freq) {
    const low = freq * ((this.xhi & 0xffff) * 65536 + (this.xlo >>> 16)) + (this.xlo & 0xffff) - cs;
    const carry = Math.floor(low * 2.3283064365386963e-10); // / 2**32, exactly
    this.xlo = low - carry * TWO32;
    this.xhi = freq * (this.xhi >>> 16) + carry;
    if (this.xhi === 0 && this.xlo < 2147483648) {
      this.xhi = this.xlo;
      this.xlo = this.ptr < this.nWords ? this.words[this.ptr] : 0;
      this.ptr++;
    }
  }
  bit(ctx) {
    const p = this.p[ctx];
    if ((this.xlo & 0xffff) >= p) { this.take(p, TOTAL - p); this.p[ctx] = p - (p >> BIN_SHIFT); return 1; }
    this.take(0, p);
    this.p[ctx] = p + ((TOTAL - p) >> BIN_SHIFT);
    return 0;
  }
  bits(n) {
    let v = 0;
    for (let i = 0; i < n; i++) {
      const b = (this.xlo & 0xffff) >= HALF ? 1 : 0;
      this.take(HALF * b, HALF);
      v = 2 * v + b;
    }
    return v;
  }
  uniform(n) {
    if (n <= 1) return 0;
    const v = Math.floor((((this.xlo & 0xffff) + 1) * n - 1) / TOTAL);
    const lo = Math.floor((v * TOTAL) / n);
    this.take(lo, Math.floor(((v + 1) * TOTAL) / n) - lo);
    return v;
  }
  finish(what = "binary stream") {
    if (this.xhi !== 0 || this.xlo !== 2147483648 || this.ptr < this.nWords) throw new BitstreamError(`${what}: damaged or truncated`);
  }
}

// dappled.entropy.binary.code_signed, decoding: zero flag, bit length in truncated unary over
// prefix contexts (the last shared), the bits below the leading one, the sign
export function decodeSigned(d, zeroCtx, prefixCtxs, maxBits) {
  if (!d.bit(zeroCtx)) return 0;
  const last = prefixCtxs.length - 1;
  let n = 1;
  while (n < maxBits && d.bit(prefixCtxs[Math.min(n - 1, last)])) n++;
  const mag = 2 ** (n - 1) + d.bits(n - 1);
  return d.bits(1) ? -mag : mag;
}

// ------------------------------------------------------------------ categorical model

const MAX_TABLE = 4096;
const MAX_COUNT_EXP = 40;

function mantissaBits(exp) { return Math.max(0, Math.floor((exp - 3) / 2)); }

function dequantizeCount(exp, mant) {
  if (exp === 0) return 1;
  const m = mantissaBits(exp), shift = exp - m;
  return (2 ** m + mant) * 2 ** shift + 2 ** (shift - 1);
}

// dappled.entropy.freqs.normalize_weights, in exact integer arithmetic
export function normalizeWeights(w, total = TOTAL) {
  const n = w.length;
  let wsum = 0;
  for (const v of w) wsum += v;
  if (n === 0 || n > total || wsum === 0) throw new BitstreamError("bad symbol counts");
  if (wsum * total > SAFE) throw new BitstreamError("symbol counts beyond the player's integer range");
  const freq = new Array(n), rem = new Array(n);
  let fsum = 0;
  for (let i = 0; i < n; i++) {
    const scaled = w[i] * total;
    const f = Math.floor(scaled / wsum);
    rem[i] = scaled - f * wsum;
    freq[i] = Math.max(f, 1);
    fsum += freq[i];
  }
  const diff = total - fsum;
  const byDesc = (key) => Array.from({ length: n }, (_, i) => i).sort((a, b) => key[b] - key[a]);
  if (diff > 0) {
    const order = byDesc(rem);
    for (let j = 0; j < diff; j++) freq[order[j]] += 1;
  }
  if (diff < 0) {
    const excess = -diff;
    let navail = 0;
    for (let i = 0; i < n; i++) navail += freq[i] - 1;
    const cut = new Array(n), frac = new Array(n);
    let cutSum = 0;
    for (let i = 0; i < n; i++) {
      const share = (freq[i] - 1) * excess;
      cut[i] = Math.floor(share / navail);
      frac[i] = share - cut[i] * navail;
      cutSum += cut[i];
    }
    const left = excess - cutSum;
    const order = byDesc(frac);
    for (let j = 0; j < left; j++) cut[order[j]] += 1;
    for (let i = 0; i < n; i++) freq[i] -= cut[i];
  }
  return freq;
}

// dappled.entropy.categorical.decode_symbols: a Float64Array of n integers
export function decodeSymbols(data, maxCount) {
  const r = new ByteReader(data);
  const n = r.uvarint();
  if (n > maxCount) throw new BitstreamError(`stream declares ${n} symbols, more than the limit ${maxCount}`);
  if (n === 0) {
    if (r.remaining) throw new BitstreamError("bytes after an empty symbol stream");
    return new Float64Array(0);
  }
  const vmin = r.svarint();
  const span = r.uvarint();
  if (span === 0) {
    if (r.remaining) throw new BitstreamError("bytes after a single-valued symbol stream");
    return new Float64Array(n).fill(vmin);
  }
  const bits = new BitReader(r.data, r.pos);
  const k = bits.gamma();
  if (k > Math.min(MAX_TABLE, n, span + 1)) throw new BitstreamError(`table of ${k} entries for ${n} symbols`);
  const escape = bits.read(1) === 1;
  if (escape && k + 1 > n) throw new BitstreamError("escape slot in a stream without room for escaped symbols");
  const values = new Float64Array(k);
  let prev = -1;
  for (let i = 0; i < k; i++) {
    prev += bits.gamma();
    if (prev > span) throw new BitstreamError("table value outside the declared span");
    values[i] = prev;
  }
  const weights = [];
  let prevExp = null;
  for (let i = 0; i < k + (escape ? 1 : 0); i++) {
    const code = bits.gamma() - 1;
    const exp = prevExp === null ? code : prevExp + unzigzag(code);
    if (!(exp >= 0 && exp <= MAX_COUNT_EXP)) throw new BitstreamError("symbol count exponent out of range");
    weights.push(dequantizeCount(exp, bits.read(mantissaBits(exp))));
    prevExp = exp;
  }
  const freqs = normalizeWeights(weights);
  r.pos = bits.bytePos();
  let payload;
  if (escape) {
    const size = r.uvarint(maxPayloadBytes(n));
    payload = r.take(size);
  } else {
    payload = r.rest();
    if (payload.length > maxPayloadBytes(n)) throw new BitstreamError("rANS payload longer than possible for the symbol count");
  }
  const escaped = r.rest();
  const pos = ransDecode(payload, freqs, n);
  const out = new Float64Array(n);
  let nEsc = 0;
  for (let i = 0; i < n; i++) {
    if (pos[i] === k) nEsc++;
    else out[i] = values[pos[i]] + vmin;
  }
  const w = span.toString(2).length; // bit length of span
  const expected = Math.ceil((nEsc * w) / 8);
  if (escaped.length !== expected) {
    const E = escaped.length < expected ? TruncatedError : BitstreamError;
    throw new E(`${escaped.length} bytes of escaped values, expected ${expected}`);
  }
  if (nEsc) {
    if (w > 52) throw new BitstreamError("escaped values beyond the player's integer range");
    const br = new BitReader(escaped);
    for (let i = 0; i < n; i++) {
      if (pos[i] !== k) continue;
      const rel = br.read(w);
      if (rel > span) throw new BitstreamError("escaped value outside the declared span");
      out[i] = rel + vmin;
    }
    while (br.pos < br.end) if (br.bit()) throw new BitstreamError("non-zero padding after the escaped values");
  }
  return out;
}

function decodeExact(data, n, what) {
  const out = decodeSymbols(data, n);
  if (out.length !== n) throw new BitstreamError(`${what}: ${out.length} symbols where ${n} were declared`);
  return out;
}

// dappled.entropy.golomb.decode_nonneg
export function decodeNonneg(data, maxCount) {
  const r = new ByteReader(data);
  const nHead = r.uvarint(data.length);
  const buckets = decodeSymbols(r.take(nHead), maxCount);
  let total = 0;
  for (const b of buckets) {
    if (b < 0 || b > 40) throw new BitstreamError("invalid Exp-Golomb bucket");
    total += Math.max(b - 1, 0);
  }
  const raw = r.rest();
  const need = Math.ceil(total / 8);
  if (raw.length !== need) {
    const E = raw.length < need ? TruncatedError : BitstreamError;
    throw new E("mantissa bits do not match the bucket stream");
  }
  const br = new BitReader(raw);
  const out = new Float64Array(buckets.length);
  for (let i = 0; i < buckets.length; i++) {
    const b = buckets[i];
    out[i] = b > 0 ? 2 ** (b - 1) + br.read(b - 1) : 0;
  }
  return out;
}

// ------------------------------------------------------------------ splat payload

const LOG_SCALE_MIN = -4.0;
const LOG_SCALE_MAX = 7.0;
const MAX_COLOR_SYMBOL = 1 << 20;

function maxGaussians(w, h) { return Math.min(w * h, 1 << 22); }

function parseQuant(b) {
  if (b.length !== 7) throw new BitstreamError("bad quantizer header size");
  const fb = b[0], ls = u16(b, 1), rl = b[3], cs = u16(b, 4), cf = b[6];
  if (fb > 8 || ls === 0 || rl === 0 || cs === 0 || cf === 0) throw new BitstreamError("invalid quantizer parameters in stream");
  return { posFracBits: fb, logScaleStep: ls / 4096, rhoLevels: rl, colorStep: cs / 65536, chromaFactor: cf / 16, key: Array.from(b).join(",") };
}

// Gaussians as integer symbols, one typed array per attribute (color: 3 per Gaussian, YCoCg)
function makeQ(n) {
  return { n, x: new Float64Array(n), y: new Float64Array(n), lsx: new Float64Array(n), lsy: new Float64Array(n), rho: new Float64Array(n), color: new Float64Array(3 * n) };
}

export function unpackGaussians(chunks, width, height) {
  const [head, pos, shape, color] = require(chunks, "HEAD", "POS ", "SHAP", "COLR");
  if (head.length !== 12) throw new BitstreamError("splat header has the wrong size");
  if (head[0] !== 1) throw new BitstreamError(`unsupported splat payload version ${head[0]}`);
  const n = u32(head, 1);
  if (n > maxGaussians(width, height)) throw new BitstreamError(`stream declares ${n} Gaussians for a ${width}x${height} image`);
  const cfg = parseQuant(head.subarray(5));
  const scale = 2 ** cfg.posFracBits;
  const gaps = decodeNonneg(pos, n);
  if (gaps.length !== n) throw new BitstreamError("position stream has the wrong count");
  const q = makeQ(n);
  const rowLen = width * scale;
  let key = 0;
  for (let i = 0; i < n; i++) {
    key += gaps[i];
    q.y[i] = Math.floor(key / rowLen);
    q.x[i] = key - q.y[i] * rowLen;
  }
  if (n && key >= rowLen * height * scale) throw new BitstreamError("position outside the image");
  const [sx, sy, rh] = require(unpackChunks(shape), "SX  ", "SY  ", "RHO ");
  const [cy, co, cg] = require(unpackChunks(color), "Y   ", "CO  ", "CG  ");
  q.lsx.set(decodeExact(sx, n, "sigma_x"));
  q.lsy.set(decodeExact(sy, n, "sigma_y"));
  q.rho.set(decodeExact(rh, n, "rho"));
  const cols = [cy, co, cg].map((c) => decodeExact(c, n, "color"));
  for (let i = 0; i < n; i++) for (let j = 0; j < 3; j++) q.color[3 * i + j] = cols[j][i];
  checkRanges(q, cfg, width, height, false);
  return [q, cfg];
}

function checkRanges(q, cfg, w, h, positions = true) {
  if (!q.n) return;
  const scale = 2 ** cfg.posFracBits;
  const lo = Math.floor(LOG_SCALE_MIN / cfg.logScaleStep), hi = Math.ceil(LOG_SCALE_MAX / cfg.logScaleStep);
  for (let i = 0; i < q.n; i++) {
    if (positions && (q.x[i] < 0 || q.y[i] < 0 || q.x[i] >= w * scale || q.y[i] >= h * scale)) throw new BitstreamError("Gaussian position outside the frame");
    if (q.lsx[i] < lo || q.lsy[i] < lo || q.lsx[i] > hi || q.lsy[i] > hi) throw new BitstreamError("Gaussian scale out of range");
    if (Math.abs(q.rho[i]) >= cfg.rhoLevels) throw new BitstreamError("Gaussian correlation out of range");
  }
  for (let i = 0; i < 3 * q.n; i++) if (Math.abs(q.color[i]) > MAX_COLOR_SYMBOL) throw new BitstreamError("Gaussian color out of range");
}

// ------------------------------------------------------------------ splat video

const FRAME_I = 0, FRAME_P = 1;
const KEEP = 0, UPDATE = 1, DROP = 2, COLOR = 3;

function parseVhed(v) {
  if (v.length !== 6) throw new BitstreamError("video frame header has the wrong size");
  if (v[0] !== 1) throw new BitstreamError(`unsupported splat video payload version ${v[0]}`);
  if (v[1] !== FRAME_I && v[1] !== FRAME_P) throw new BitstreamError(`unknown video frame type ${v[1]}`);
  return [v[1], u32(v, 2)];
}

function parseMotion(data, cfg, width, height) {
  if (data.length < 2) throw new BitstreamError("motion chunk too short");
  const block = data[0], k = data[1];
  if (block < 8 || k < 1 || k > 16 || data.length < 2 + 8 * k) throw new BitstreamError("bad motion chunk header");
  const vx = new Float64Array(k), vy = new Float64Array(k);
  const scale = 2 ** cfg.posFracBits;
  for (let i = 0; i < k; i++) {
    vx[i] = i32(data, 2 + 8 * i); vy[i] = i32(data, 6 + 8 * i);
    if (Math.abs(vx[i]) > width * scale || Math.abs(vy[i]) > height * scale) throw new BitstreamError("motion vector larger than the frame");
  }
  const rows = Math.ceil(height / block), cols = Math.ceil(width / block);
  const labels = decodeExact(data.subarray(2 + 8 * k), rows * cols, "motion labels");
  for (const l of labels) if (l < 0 || l >= k) throw new BitstreamError("motion label out of range");
  let zero = true;
  for (const l of labels) if (vx[l] !== 0 || vy[l] !== 0) { zero = false; break; }
  return { block, vx, vy, labels, rows, cols, zero };
}

function applyMotion(q, m, cfg, width, height) {
  if (m.zero) return;
  const scale = 2 ** cfg.posFracBits, cell = scale * m.block;
  for (let i = 0; i < q.n; i++) {
    const by = Math.min(Math.max(Math.floor(q.y[i] / cell), 0), m.rows - 1);
    const bx = Math.min(Math.max(Math.floor(q.x[i] / cell), 0), m.cols - 1);
    const l = m.labels[by * m.cols + bx];
    q.x[i] = Math.min(Math.max(q.x[i] + m.vx[l], 0), width * scale - 1);
    q.y[i] = Math.min(Math.max(q.y[i] + m.vy[l], 0), height * scale - 1);
  }
}

function copyQ(q) {
  const c = makeQ(q.n);
  for (const a of ["x", "y", "lsx", "lsy", "rho", "color"]) c[a].set(q[a]);
  return c;
}

// dappled.codec.splat.video.decoder.apply_frame: the new decoder state after one frame payload
export function applyFrame(payload, state, width, height) {
  const chunks = unpackChunks(payload);
  const [vhed] = require(chunks, "VHED");
  const [ftype, nref] = parseVhed(vhed);
  if (ftype === FRAME_I) {
    const [q, cfg] = unpackGaussians(chunks, width, height);
    checkRanges(q, cfg, width, height);
    return { q, cfg };
  }
  if (!state) throw new BitstreamError("predicted frame without a preceding intra frame");
  if (nref !== state.q.n) throw new BitstreamError(`predicted frame refers to ${nref} Gaussians, the decoder holds ${state.q.n}`);
  const [motn, flagData, dpos, dshp, dcol, add] = require(chunks, "MOTN", "FLAG", "DPOS", "DSHP", "DCOL", "ADD ");
  const flags = decodeExact(flagData, nref, "update flags");
  for (const f of flags) if (f < KEEP || f > COLOR) throw new BitstreamError("bad update flag");
  const cfg = state.cfg;
  const motion = parseMotion(motn, cfg, width, height);
  const upd = [], col = [];
  for (let i = 0; i < nref; i++) {
    if (flags[i] === UPDATE) upd.push(i);
    if (flags[i] === UPDATE || flags[i] === COLOR) col.push(i);
  }
  const nu = upd.length, nc = col.length;
  const [dx, dy] = require(unpackChunks(dpos), "DX  ", "DY  ").map((c) => decodeExact(c, nu, "position delta"));
  const [dsx, dsy, drho] = require(unpackChunks(dshp), "DSX ", "DSY ", "DRHO").map((c) => decodeExact(c, nu, "shape delta"));
  const dc = require(unpackChunks(dcol), "DCY ", "DCO ", "DCG ").map((c) => decodeExact(c, nc, "color delta"));
  for (const d of [dx, dy, dsx, dsy, drho, ...dc]) for (const v of d) if (Math.abs(v) > 4 * MAX_COLOR_SYMBOL) throw new BitstreamError("update delta out of range");
  const q = copyQ(state.q);
  applyMotion(q, motion, cfg, width, height);
  for (let j = 0; j < nu; j++) {
    const i = upd[j];
    q.x[i] += dx[j]; q.y[i] += dy[j]; q.lsx[i] += dsx[j]; q.lsy[i] += dsy[j]; q.rho[i] += drho[j];
  }
  for (let j = 0; j < nc; j++) for (let c = 0; c < 3; c++) q.color[3 * col[j] + c] += dc[c][j];
  const [added, addCfg] = unpackGaussians(unpackChunks(add), width, height);
  if (addCfg.key !== cfg.key) throw new BitstreamError("added Gaussians use another quantizer than their group");
  let kept = 0;
  for (let i = 0; i < nref; i++) if (flags[i] !== DROP) kept++;
  const out = makeQ(kept + added.n);
  if (out.n > maxGaussians(width, height)) throw new BitstreamError(`${out.n} Gaussians for a ${width}x${height} frame`);
  let o = 0;
  for (let i = 0; i < nref; i++) {
    if (flags[i] === DROP) continue;
    out.x[o] = q.x[i]; out.y[o] = q.y[i]; out.lsx[o] = q.lsx[i]; out.lsy[o] = q.lsy[i]; out.rho[o] = q.rho[i];
    out.color[3 * o] = q.color[3 * i]; out.color[3 * o + 1] = q.color[3 * i + 1]; out.color[3 * o + 2] = q.color[3 * i + 2];
    o++;
  }
  for (let i = 0; i < added.n; i++, o++) {
    out.x[o] = added.x[i]; out.y[o] = added.y[i]; out.lsx[o] = added.lsx[i]; out.lsy[o] = added.lsy[i]; out.rho[o] = added.rho[i];
    out.color[3 * o] = added.color[3 * i]; out.color[3 * o + 1] = added.color[3 * i + 1]; out.color[3 * o + 2] = added.color[3 * i + 2];
  }
  checkRanges(out, cfg, width, height);
  return { q: out, cfg };
}

// ------------------------------------------------------------------ dequantize and project

const COV_EPS = Math.fround(0.1);
const f = Math.fround;

// Per Gaussian, 12 floats for the GPU: mean (2), conic (3), RGB color (3), pixel box (4).
// Dequantization follows dappled.models.splat.quantize.dequantize (float64, then float32);
// conics and boxes follow numba_cpu._project operation by operation in float32.
export const INSTANCE_FLOATS = 12;

export function gaussianInstances(state, width, height, out) {
  const { q, cfg } = state;
  const n = q.n;
  const need = n * INSTANCE_FLOATS;
  if (!out || out.length < need) out = new Float32Array(Math.max(need, 1024));
  const scale = 2 ** cfg.posFracBits;
  const s = cfg.colorStep, sc = cfg.colorStep * cfg.chromaFactor;
  let o = 0, count = 0;
  for (let i = 0; i < n; i++) {
    const mx = f(q.x[i] / scale), my = f(q.y[i] / scale);
    const sx = Math.exp(q.lsx[i] * cfg.logScaleStep), sy = Math.exp(q.lsy[i] * cfg.logScaleStep);
    const rho = Math.min(Math.max(q.rho[i] / cfg.rhoLevels, -1), 1);
    const l11 = f(sx), l21 = f(rho * sy), l22 = f(sy * Math.sqrt(Math.max(1 - rho * rho, 0)));
    const Y = q.color[3 * i] * s, Co = q.color[3 * i + 1] * sc, Cg = q.color[3 * i + 2] * sc;
    const r = f(Y + Co - Cg), g = f(Y + Cg), b = f(Y - Co - Cg);
    // conic, as numba_cpu._project (float32 at every step)
    const sxx = f(f(l11 * l11) + COV_EPS);
    const sxy = f(l11 * l21);
    const syy = f(f(f(l21 * l21) + f(l22 * l22)) + COV_EPS);
    const p = f(l11 * l22);
    const det = f(f(p * p) + f(COV_EPS * f(f(f(f(l11 * l11) + f(l21 * l21)) + f(l22 * l22)) + COV_EPS)));
    const ca = f(syy / det), cb = f(-sxy / det), cc = f(sxx / det);
    const rx = f(3 * f(Math.sqrt(sxx))), ry = f(3 * f(Math.sqrt(syy)));
    const x0 = Math.ceil(f(f(mx - rx) - 0.5)) - 1, y0 = Math.ceil(f(f(my - ry) - 0.5)) - 1;
    const x1 = Math.floor(f(f(mx + rx) - 0.5)) + 2, y1 = Math.floor(f(f(my + ry) - 0.5)) + 2;
    if (!(Number.isFinite(x0) && Number.isFinite(x1) && Number.isFinite(y0) && Number.isFinite(y1))) continue;
    if (!(ca > 0 && cc > 0 && Number.isFinite(ca) && Number.isFinite(cc) && Number.isFinite(cb))) continue;
    const bx0 = Math.min(Math.max(x0, 0), width), by0 = Math.min(Math.max(y0, 0), height);
    const bx1 = Math.min(Math.max(x1, 0), width), by1 = Math.min(Math.max(y1, 0), height);
    if (bx1 <= bx0 || by1 <= by0) continue;
    out[o++] = mx; out[o++] = my; out[o++] = ca; out[o++] = cb; out[o++] = cc;
    out[o++] = r; out[o++] = g; out[o++] = b;
    out[o++] = bx0; out[o++] = by0; out[o++] = bx1; out[o++] = by1;
    count++;
  }
  return { data: out, count };
}

// A decoder that mirrors dappled.codec.splat.video.decoder.SplatVideoDecoder: feed FRAME packets in
// order (from any intra frame on), get the state to render.
export class SplatVideoDecoder {
  constructor(header) {
    if (header.codecId !== SPLATV_CODEC_ID) throw new BitstreamError(`not a splat video stream (codec id ${header.codecId})`);
    this.header = header;
    this.reset();
  }
  reset() { this.state = null; this.lastFrame = null; }
  decode(packet) {
    if (packet.type !== PACKET.FRAME) return null;
    if (this.state && this.lastFrame !== null && packet.frame !== this.lastFrame + 1 && !packet.keyframe)
      throw new BitstreamError(`predicted frame ${packet.frame} does not follow frame ${this.lastFrame}`);
    this.state = applyFrame(packet.payload, this.state, this.header.width, this.header.height);
    this.lastFrame = packet.frame;
    return this.state;
  }
}
