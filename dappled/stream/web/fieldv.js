// The field video decoder in the browser (codec id 6): a port of dappled/codec/field/video/
// {format,decoder}.py and dappled/codec/motion.py's compensate. Spec: docs/format.md, "Field video".
//
// A frame payload is chunks starting with VHED (version, frame type, escape count), or, payload
// version 3, the compact layout (byte 0 = 0xF0 | type, varint lengths), parsed into the same named
// parts: an intra frame is a field image payload (FLD, decoded by field.js); a predicted frame is
// block motion (MOTN) from the previous decoded frame, compensated in integers exactly as Python
// does (version 3: the cubic interpolation; version 4: then, where byte 0 has bit 0x08, a 3x3
// prediction filter in integers; version 5, bit 0x04: the 8-tap interpolation; version 6, byte 0
// 0xE0 | flags: a transform residual, dct.js, added before the clip), plus, unless it is a type 3 frame (the prediction
// alone), a residual field whose synthesis output is added to that prediction before the clip
// (field.js's synthesize with a base). The group's networks come with its first predicted frame (FLD); later
// ones carry their latents alone (LAT, ESC), coded under those networks. Every step is exact, so
// the pixels are the Python decoder's bit for bit (tests/test_web_fieldv.py); with the WebGL2
// synthesis (field-gl.js) each frame's residual is within +-1, and the error can build up
// through a group, since every predicted frame starts from the previous one.

import { BinaryDecoder, BitstreamError, decodeSigned, decodeSymbols, require, unpackChunks } from "./dpl.js";
import { decodeDctResidual } from "./dct.js";
import { addClip, decodeLatents, fieldGrids, parseLatents, parsePayload, synthesize, synthesizeRounded } from "./field.js";

export const FIELDV_CODEC_ID = 6;
const READ_VERSIONS = [1, 2]; // in VHED chunks; 2: entropy-coded motion vectors (3: compact layout)
const FRAME_I = 0, FRAME_P_NET = 1, FRAME_P = 2, FRAME_P_SKIP = 3, FRAME_P_DCT = 4;
const V3_MARK = 0xf0;
const DCT_MARK = 0xe0; // byte 0 of a version 6 frame (a transform residual): DCT_MARK | flags
const FILTER_FLAG = 0x08; // byte 0 of a version 4 predicted frame with a prediction filter
const SHARP8_FLAG = 0x04; // byte 0 of a version 5 predicted frame: the 8-tap interpolation
const FRAC_BITS = 2; // motion vectors in quarter pixels
const MAX_VECTORS = 64;
const MAX_PIXELS = 1 << 24;

// dappled.codec.field.video.format.parse_vhed: [frame type, escape count, payload version]
export function parseVhed(v) {
  if (v.length !== 6) throw new BitstreamError("field video frame header has the wrong size");
  if (!READ_VERSIONS.includes(v[0])) throw new BitstreamError(`unsupported field video payload version ${v[0]}`);
  if (v[1] !== FRAME_I && v[1] !== FRAME_P_NET && v[1] !== FRAME_P) throw new BitstreamError(`unknown field video frame type ${v[1]}`);
  return [v[1], (v[2] | (v[3] << 8) | (v[4] << 16)) + v[5] * 16777216, v[0]];
}

// dappled.codec.field.video.format.parse_motion: { block, vx, vy (Int32Array, quarter pixels),
// labels (Int32Array, rows x cols of blocks), rows, cols }
export function parseMotion(data, width, height, version = 2) {
  return version === 1 ? parseMotionV1(data, width, height) : parseMotionV2(data, width, height);
}

// the contexts of format.py's version 2 motion coder
const CTX_CAND = 0, CTX_NEW = 16, CTX_ZX = 17, CTX_ZY0 = 18, CTX_ZY1 = 19, N_CTX = 32;
const PREFIX_X = [20, 21, 22, 23, 24, 25], PREFIX_Y = [26, 27, 28, 29, 30, 31];
const med3 = (a, b, c) => Math.max(Math.min(a, b), Math.min(Math.max(a, b), c));

// format.py's _walk_motion, decoding: every block takes a neighbour's vector, one used before in
// the frame, or a new one (its difference from the median of left, top and top-right)
function parseMotionV2(data, width, height) {
  if (data.length < 1 || data[0] < 8) throw new BitstreamError("bad motion chunk header");
  const block = data[0];
  const rows = Math.ceil(height / block), cols = Math.ceil(width / block);
  const d = new BinaryDecoder(data.subarray(1), N_CTX);
  const one = 1 << FRAC_BITS, limX = width * one, limY = height * one;
  const maxBits = (2 * Math.max(limX, limY)).toString(2).length;
  const labels = new Int32Array(rows * cols);
  const sx = [], sy = []; // the distinct vectors, in order of first use
  const cand = new Int32Array(4);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      let nc = 0;
      const add = (l) => { for (let j = 0; j < nc; j++) if (cand[j] === l) return; cand[nc++] = l; };
      const at = r * cols + c;
      if (c) add(labels[at - 1]);
      if (r) add(labels[at - cols]);
      if (r && c + 1 < cols) add(labels[at - cols + 1]);
      if (r && c) add(labels[at - cols - 1]);
      let i = 0;
      while (i < nc && d.bit(CTX_CAND + 4 * (nc - 1) + i)) i++;
      if (i < nc) { labels[at] = cand[i]; continue; }
      const others = [];
      for (let l = 0; l < sx.length; l++) if (!cand.subarray(0, nc).includes(l)) others.push(l);
      if (others.length && !d.bit(CTX_NEW)) { labels[at] = others[d.uniform(others.length)]; continue; }
      if (sx.length === MAX_VECTORS) throw new BitstreamError(`more than ${MAX_VECTORS} motion vectors`);
      let px, py;
      if (r === 0) {
        px = c ? sx[labels[at - 1]] : 0; py = c ? sy[labels[at - 1]] : 0;
      } else {
        const a = c ? labels[at - 1] : -1, b = labels[at - cols];
        const e = c + 1 < cols ? labels[at - cols + 1] : c ? labels[at - cols - 1] : -1;
        px = med3(a < 0 ? 0 : sx[a], sx[b], e < 0 ? 0 : sx[e]);
        py = med3(a < 0 ? 0 : sy[a], sy[b], e < 0 ? 0 : sy[e]);
      }
      const dx = decodeSigned(d, CTX_ZX, PREFIX_X, maxBits);
      const dy = decodeSigned(d, dx ? CTX_ZY1 : CTX_ZY0, PREFIX_Y, maxBits);
      const vx = px + dx, vy = py + dy;
      if (Math.abs(vx) > limX || Math.abs(vy) > limY) throw new BitstreamError("motion vector larger than the frame");
      for (let l = 0; l < sx.length; l++) if (sx[l] === vx && sy[l] === vy) throw new BitstreamError("motion vector sent twice");
      labels[at] = sx.length;
      sx.push(vx); sy.push(vy);
    }
  }
  d.finish("motion vectors");
  return { block, vx: Int32Array.from(sx), vy: Int32Array.from(sy), labels, rows, cols };
}

// version 1: raw vectors, categorical labels
function parseMotionV1(data, width, height) {
  if (data.length < 2) throw new BitstreamError("motion chunk too short");
  const block = data[0], k = data[1];
  if (block < 8 || k < 1 || k > MAX_VECTORS || data.length < 2 + 4 * k) throw new BitstreamError("bad motion chunk header");
  const vx = new Int32Array(k), vy = new Int32Array(k);
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (let i = 0; i < k; i++) { vx[i] = dv.getInt16(2 + 4 * i, true); vy[i] = dv.getInt16(4 + 4 * i, true); }
  const one = 1 << FRAC_BITS;
  for (let i = 0; i < k; i++) {
    if (Math.abs(vx[i]) > width * one || Math.abs(vy[i]) > height * one) throw new BitstreamError("motion vector larger than the frame");
  }
  const rows = Math.ceil(height / block), cols = Math.ceil(width / block);
  const rest = data.subarray(2 + 4 * k);
  const labels = new Int32Array(rows * cols);
  if (k === 1) {
    if (rest.length) throw new BitstreamError("motion labels with a single vector");
  } else {
    const l = decodeSymbols(rest, rows * cols);
    if (l.length !== rows * cols) throw new BitstreamError(`motion labels: ${l.length} where ${rows * cols} were declared`);
    for (let i = 0; i < l.length; i++) {
      if (l[i] < 0 || l[i] >= k) throw new BitstreamError("motion label out of range");
      labels[i] = l[i];
    }
  }
  return { block, vx, vy, labels, rows, cols };
}

// the cubic interpolation's taps (dappled.codec.motion.CUBIC_TAPS), quarter-pixel phases 0..3
const CUBIC_TAPS = [[0, 64, 0, 0], [-4, 54, 16, -2], [-4, 36, 36, -4], [-2, 16, 54, -4]];

// dappled.codec.motion.compensate with filt="cubic" (payload version 3): every pixel p of a
// block takes the 4x4 source pixels around p - v (edges replicated), weighted by the taps of the
// vector's quarter-pixel phases, summed in integers (at most 255 * 76 * 76: inside 32 bits), then
// (sum + 2048) >> 12, clipped to 0..255.
export function compensateCubic(prev, m, width, height, out = null) {
  let zero = true;
  for (const l of m.labels) if (m.vx[l] !== 0 || m.vy[l] !== 0) { zero = false; break; }
  if (zero) return prev;
  if (!out || out.length !== prev.length) out = new Uint8Array(prev.length);
  // separable: each block's rows are filtered across first (exact integer sums, kept in `hs`),
  // then down: the same integers as the 4x4 sum, with 8 multiplications a sample instead of 16
  const B = m.block, H1 = height - 1, W1 = width - 1, mask = (1 << FRAC_BITS) - 1;
  const hs = new Int32Array((B + 3) * B * 3), cols = new Int32Array(4 * B);
  for (let by = 0; by < m.rows; by++) {
    const ya = by * B, yb = Math.min(height, ya + B), nh = yb - ya;
    for (let bx = 0; bx < m.cols; bx++) {
      const xa = bx * B, xb = Math.min(width, xa + B), nw = xb - xa;
      const l = m.labels[by * m.cols + bx];
      const ty = CUBIC_TAPS[-m.vy[l] & mask], tx = CUBIC_TAPS[-m.vx[l] & mask];
      const dy = ((-m.vy[l]) >> FRAC_BITS) - 1, dx = ((-m.vx[l]) >> FRAC_BITS) - 1;
      const t0 = tx[0], t1 = tx[1], t2 = tx[2], t3 = tx[3];
      for (let j = 0; j < nw; j++) {
        for (let b = 0; b < 4; b++) {
          const c = xa + j + dx + b;
          cols[4 * j + b] = 3 * (c < 0 ? 0 : c > W1 ? W1 : c);
        }
      }
      for (let a = 0; a < nh + 3; a++) {  // the rows the block reads, filtered across
        const r = ya + dy + a, row = 3 * width * (r < 0 ? 0 : r > H1 ? H1 : r);
        for (let j = 0, o = 3 * a * B; j < nw; j++, o += 3) {
          const i0 = row + cols[4 * j], i1 = row + cols[4 * j + 1];
          const i2 = row + cols[4 * j + 2], i3 = row + cols[4 * j + 3];
          hs[o] = t0 * prev[i0] + t1 * prev[i1] + t2 * prev[i2] + t3 * prev[i3];
          hs[o + 1] = t0 * prev[i0 + 1] + t1 * prev[i1 + 1] + t2 * prev[i2 + 1] + t3 * prev[i3 + 1];
          hs[o + 2] = t0 * prev[i0 + 2] + t1 * prev[i1 + 2] + t2 * prev[i2 + 2] + t3 * prev[i3 + 2];
        }
      }
      const u0 = ty[0], u1 = ty[1], u2 = ty[2], u3 = ty[3], st = 3 * B;
      for (let y = 0; y < nh; y++) {
        for (let j = 0, h = 3 * y * B, o = 3 * ((ya + y) * width + xa); j < 3 * nw; j++, h++, o++) {
          const s = (u0 * hs[h] + u1 * hs[h + st] + u2 * hs[h + 2 * st] + u3 * hs[h + 3 * st] + 2048) >> 12;
          out[o] = s < 0 ? 0 : s > 255 ? 255 : s;
        }
      }
    }
  }
  return out;
}

// the "sharp8" interpolation's taps (dappled.codec.motion.SHARP8_TAPS), at -3 .. +4 pixels
const SHARP8_TAPS = [[0, 0, 0, 64, 0, 0, 0, 0], [-1, 4, -10, 58, 17, -5, 1, 0],
  [-1, 4, -11, 40, 40, -11, 4, -1], [0, 1, -5, 17, 58, -10, 4, -1]];

// dappled.codec.motion.compensate with filt="sharp8" (payload version 5): compensateCubic with
// the 8x8 taps around p - v (at most 255 * 112 * 112 before the shift: inside 32 bits). Kept
// apart from the 4-tap one: cubic frames run through this one (their taps padded with zeros)
// took a 640x272 predicted frame from 18-19 to 20-25 ms and stalled the player
// (docs/data/web-s9/bikes25-speed-merged-taps.txt).
export function compensateSharp8(prev, m, width, height, out = null) {
  let zero = true;
  for (const l of m.labels) if (m.vx[l] !== 0 || m.vy[l] !== 0) { zero = false; break; }
  if (zero) return prev;
  if (!out || out.length !== prev.length) out = new Uint8Array(prev.length);
  const B = m.block, H1 = height - 1, W1 = width - 1, mask = (1 << FRAC_BITS) - 1;
  const hs = new Int32Array((B + 7) * B * 3), cols = new Int32Array(8 * B);
  for (let by = 0; by < m.rows; by++) {
    const ya = by * B, yb = Math.min(height, ya + B), nh = yb - ya;
    for (let bx = 0; bx < m.cols; bx++) {
      const xa = bx * B, xb = Math.min(width, xa + B), nw = xb - xa;
      const l = m.labels[by * m.cols + bx];
      const ty = SHARP8_TAPS[-m.vy[l] & mask], tx = SHARP8_TAPS[-m.vx[l] & mask];
      const dy = ((-m.vy[l]) >> FRAC_BITS) - 3, dx = ((-m.vx[l]) >> FRAC_BITS) - 3;
      const t0 = tx[0], t1 = tx[1], t2 = tx[2], t3 = tx[3], t4 = tx[4], t5 = tx[5], t6 = tx[6], t7 = tx[7];
      for (let j = 0; j < nw; j++) {
        for (let b = 0; b < 8; b++) {
          const c = xa + j + dx + b;
          cols[8 * j + b] = 3 * (c < 0 ? 0 : c > W1 ? W1 : c);
        }
      }
      for (let a = 0; a < nh + 7; a++) {  // the rows the block reads, filtered across
        const r = ya + dy + a, row = 3 * width * (r < 0 ? 0 : r > H1 ? H1 : r);
        for (let j = 0, o = 3 * a * B; j < nw; j++, o += 3) {
          const k = 8 * j;
          for (let ch = 0; ch < 3; ch++) {
            const q = row + ch;
            hs[o + ch] = t0 * prev[q + cols[k]] + t1 * prev[q + cols[k + 1]] + t2 * prev[q + cols[k + 2]]
              + t3 * prev[q + cols[k + 3]] + t4 * prev[q + cols[k + 4]] + t5 * prev[q + cols[k + 5]]
              + t6 * prev[q + cols[k + 6]] + t7 * prev[q + cols[k + 7]];
          }
        }
      }
      const u0 = ty[0], u1 = ty[1], u2 = ty[2], u3 = ty[3], u4 = ty[4], u5 = ty[5], u6 = ty[6], u7 = ty[7];
      const st = 3 * B;
      for (let y = 0; y < nh; y++) {
        for (let j = 0, h = 3 * y * B, o = 3 * ((ya + y) * width + xa); j < 3 * nw; j++, h++, o++) {
          const s = (u0 * hs[h] + u1 * hs[h + st] + u2 * hs[h + 2 * st] + u3 * hs[h + 3 * st] + u4 * hs[h + 4 * st]
            + u5 * hs[h + 5 * st] + u6 * hs[h + 6 * st] + u7 * hs[h + 7 * st] + 2048) >> 12;
          out[o] = s < 0 ? 0 : s > 255 ? 255 : s;
        }
      }
    }
  }
  return out;
}

// dappled.codec.motion.compensate: every pixel p of a block takes prev(p - v), bilinear between
// the four nearest pixels (edges replicated), in integers (all well inside 32 bits). A block's
// vector is one, so its bilinear weights are too: they are set once a block. out: where to write
// (a new array if none); without motion, prev itself is returned (the prediction is only read).
export function compensate(prev, m, width, height, out = null) {
  let zero = true;
  for (const l of m.labels) if (m.vx[l] !== 0 || m.vy[l] !== 0) { zero = false; break; }
  if (zero) return prev;
  const one = 1 << FRAC_BITS, mask = one - 1, shift = 2 * FRAC_BITS, half = 1 << (shift - 1);
  if (!out || out.length !== prev.length) out = new Uint8Array(prev.length);
  const B = m.block, H1 = height - 1, W1 = width - 1;
  for (let by = 0; by < m.rows; by++) {
    const ya = by * B, yb = Math.min(height, ya + B);
    for (let bx = 0; bx < m.cols; bx++) {
      const xa = bx * B, xb = Math.min(width, xa + B);
      const l = m.labels[by * m.cols + bx];
      const fy = -m.vy[l] & mask, fx = -m.vx[l] & mask;
      const dy = (-m.vy[l]) >> FRAC_BITS, dx = (-m.vx[l]) >> FRAC_BITS; // sy >> FRAC_BITS = y + dy
      const w00 = (one - fy) * (one - fx), w01 = (one - fy) * fx, w10 = fy * (one - fx), w11 = fy * fx;
      for (let y = ya; y < yb; y++) {
        const iy = y + dy;
        const y0 = iy < 0 ? 0 : iy > H1 ? H1 : iy, y1 = iy + 1 < 0 ? 0 : iy + 1 > H1 ? H1 : iy + 1;
        const r0 = 3 * y0 * width, r1 = 3 * y1 * width;
        for (let x = xa, o = 3 * (y * width + xa); x < xb; x++, o += 3) {
          const ix = x + dx;
          const x0 = 3 * (ix < 0 ? 0 : ix > W1 ? W1 : ix), x1 = 3 * (ix + 1 < 0 ? 0 : ix + 1 > W1 ? W1 : ix + 1);
          const a = r0 + x0, b = r0 + x1, c = r1 + x0, d = r1 + x1;
          out[o] = (prev[a] * w00 + prev[b] * w01 + prev[c] * w10 + prev[d] * w11 + half) >> shift;
          out[o + 1] = (prev[a + 1] * w00 + prev[b + 1] * w01 + prev[c + 1] * w10 + prev[d + 1] * w11 + half) >> shift;
          out[o + 2] = (prev[a + 2] * w00 + prev[b + 2] * w01 + prev[c + 2] * w10 + prev[d + 2] * w11 + half) >> shift;
        }
      }
    }
  }
  return out;
}

// an unsigned LEB128 varint of at most 4 bytes at pos: [value, next position]
function readVarint(data, pos) {
  let n = 0;
  for (let k = 0; k < 4; k++) {
    if (pos + k >= data.length) throw new BitstreamError("field video frame ends inside a length");
    const b = data[pos + k];
    n += (b & 0x7f) * 2 ** (7 * k);
    if (b < 0x80) return [n, pos + k + 1];
  }
  throw new BitstreamError("field video frame: length over 4 bytes");
}

// dappled.codec.field.video.format.parse_frame: a frame payload's parts and header fields,
// { chunks (a Map of the named parts, empty ones left out), type, nEsc, version }
export function frameHead(payload) {
  if (!payload.length) throw new BitstreamError("empty field video frame");
  if (payload[0] >= DCT_MARK && payload[0] < V3_MARK) return dctHead(payload);
  if (payload[0] < V3_MARK) {
    const chunks = unpackChunks(payload);
    const [vhed] = require(chunks, "VHED");
    const [type, nEsc, version] = parseVhed(vhed);
    return { chunks, type, nEsc, version };
  }
  const type = payload[0] & 0x03;
  const sharp8 = (payload[0] & SHARP8_FLAG) !== 0;
  if (sharp8 && type === FRAME_I) throw new BitstreamError(`unknown field video frame type ${payload[0] & 0x0f}`);
  const parts = new Map();
  let pos = 1, nEsc = 0, m = 0, n = 0, filter = null;
  if (payload[0] & FILTER_FLAG) { // version 4: the prediction filter
    if (type === FRAME_I) throw new BitstreamError("prediction filter on an intra frame");
    [filter, pos] = parseFilter(payload, pos);
  }
  const put = (tag, a, b) => { if (b > a) parts.set(tag, payload.subarray(a, b)); };
  if (type === FRAME_P_NET || type === FRAME_P) {
    [m, pos] = readVarint(payload, pos);
    if (pos + m > payload.length) throw new BitstreamError("field video frame ends inside its motion");
    put("MOTN", pos, pos + m);
    pos += m;
  }
  if (type === FRAME_P) {
    [nEsc, pos] = readVarint(payload, pos);
    [n, pos] = readVarint(payload, pos);
    if (pos + n > payload.length) throw new BitstreamError("field video frame ends inside its latents");
    put("LAT ", pos, pos + n);
    put("ESC ", pos + n, payload.length);
  } else if (type === FRAME_P_SKIP) {
    put("MOTN", pos, payload.length);
  } else {
    put("FLD ", pos, payload.length);
  }
  return { chunks: parts, type, nEsc, version: sharp8 ? 5 : filter ? 4 : 3, filter };
}

// a version 6 frame: flags, the prediction filter, varint m, m bytes of motion, the transform residual
function dctHead(payload) {
  if (payload[0] & 0x03) throw new BitstreamError(`unknown field video frame type 0x${payload[0].toString(16)}`);
  let pos = 1, filter = null, m;
  if (payload[0] & FILTER_FLAG) [filter, pos] = parseFilter(payload, pos);
  [m, pos] = readVarint(payload, pos);
  if (pos + m > payload.length) throw new BitstreamError("field video frame ends inside its motion");
  const chunks = new Map();
  if (m) chunks.set("MOTN", payload.subarray(pos, pos + m));
  if (pos + m >= payload.length) throw new BitstreamError("field video frame without its transform residual");
  chunks.set("DCT ", payload.subarray(pos + m));
  return { chunks, type: FRAME_P_DCT, nEsc: 0, version: 6, filter, sharp8: (payload[0] & SHARP8_FLAG) !== 0 };
}

// dappled.codec.field.video.format._parse_filter: 18 zigzag varints, each minus the identity's
const FILTER_IDENTITY = [0, 0, 0, 0, 256, 0];
function parseFilter(data, pos) {
  const c = new Int32Array(18);
  for (let i = 0; i < 18; i++) {
    let z;
    [z, pos] = readVarint(data, pos);
    const v = z % 2 === 0 ? z / 2 : -(z + 1) / 2;
    c[i] = v + FILTER_IDENTITY[i % 6];
    if (Math.abs(c[i]) > (i % 6 === 5 ? 65536 : 2048)) throw new BitstreamError("field video prediction filter out of range");
  }
  return [c, pos];
}

// dappled.codec.prediction_filter.apply_filter: per channel, five point-symmetric taps and a bias
// in 1/256, edges replicated, clip((sum + bias + 128) >> 8) (every sum is below 2**31). A row at a
// time (a small function the JIT optimises after a few rows), its inner pixels without clamps.
export function applyFilter(src, c, width, height, out) {
  const s = 3 * width;
  for (let y = 0; y < height; y++) {
    const r = s * y;
    filterRow(src, c, width, out, r, y > 0 ? r - s : r, y < height - 1 ? r + s : r);
  }
  return out;
}

function filterPixel(src, c, out, ru, r, rd, xl, xc, xr) {
  for (let ch = 0, o = 0; ch < 3; ch++, o += 6) {
    const l = xl + ch, m = xc + ch, q = xr + ch;
    const v = (c[o] * (src[ru + l] + src[rd + q]) + c[o + 1] * (src[ru + m] + src[rd + m])
      + c[o + 2] * (src[ru + q] + src[rd + l]) + c[o + 3] * (src[r + l] + src[r + q]) + c[o + 4] * src[r + m]
      + c[o + 5] + 128) >> 8;
    out[r + m] = v < 0 ? 0 : v > 255 ? 255 : v;
  }
}

function filterRow(src, c, width, out, r, ru, rd) {
  filterPixel(src, c, out, ru, r, rd, 0, 0, width > 1 ? 3 : 0);
  if (width < 2) return;
  for (let ch = 0; ch < 3; ch++) {
    const o = 6 * ch, w0 = c[o], w1 = c[o + 1], w2 = c[o + 2], w3 = c[o + 3], w4 = c[o + 4], b = c[o + 5] + 128;
    for (let m = 3 + ch, e = 3 * (width - 1); m < e; m += 3) {
      const v = (w0 * (src[ru + m - 3] + src[rd + m + 3]) + w1 * (src[ru + m] + src[rd + m])
        + w2 * (src[ru + m + 3] + src[rd + m - 3]) + w3 * (src[r + m - 3] + src[r + m + 3]) + w4 * src[r + m] + b) >> 8;
      out[r + m] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
  const x = 3 * (width - 1);
  filterPixel(src, c, out, ru, r, rd, x - 3, x, x);
}

// The prediction of a predicted frame from the state ({ frame, net } or null): the checks that
// need the state, then the motion, compensated. null for an intra frame. The prediction is read
// only, and valid until the next call (a buffer kept across frames, or the previous frame).
let predBuf = null, filterBuf = null;
export function predict(head, state, width, height) {
  if (head.type === FRAME_I) return null;
  if (!state) throw new BitstreamError("predicted frame without a preceding intra frame");
  let pred = state.frame; // version 2 without MOTN: nothing moves
  if (head.version === 1 || head.chunks.has("MOTN")) {
    const motion = parseMotion(require(head.chunks, "MOTN")[0], width, height, head.version);
    if (!predBuf || predBuf.length !== state.frame.length) predBuf = new Uint8Array(state.frame.length);
    const comp = head.version === 6 ? (head.sharp8 ? compensateSharp8 : compensateCubic)
      : head.version >= 5 ? compensateSharp8 : head.version >= 3 ? compensateCubic : compensate;
    pred = comp(state.frame, motion, width, height, predBuf);
  }
  if (head.type === FRAME_P && !state.net) throw new BitstreamError("predicted frame without its group's networks");
  if (head.filter) {
    if (!filterBuf || filterBuf.length !== pred.length) filterBuf = new Uint8Array(pred.length);
    pred = applyFilter(pred, head.filter, width, height, filterBuf);
  }
  return pred;
}

// The part of a frame that needs no earlier frame's pixels: its field payload (or, type 2, its
// latents under the group's networks `net`, a parsed field payload) decoded and synthesised:
// { p (the parsed payload), rounded (round(255 v), Int32Array), latentMs, synthMs }. gl: the
// WebGL2 synthesis, or clip true (then `pixels` is the clipped frame, given the prediction `pred`).
// A type 3 frame has none: p null, rounded empty, pixels a copy of the prediction.
export function residualOf(head, net, width, height, tb, gl = null, pred = null, clip = false) {
  const t0 = performance.now();
  const { chunks, type, nEsc } = head;
  if (type === FRAME_P_SKIP) {
    const out = gl || clip ? { pixels: pred.slice() } : { rounded: new Int32Array(0) };
    return { p: null, ...out, latentMs: 0, synthMs: performance.now() - t0 };
  }
  if (type === FRAME_P_DCT) { // version 6: a transform residual, added to the prediction
    const rounded = decodeDctResidual(require(chunks, "DCT ")[0], width, height);
    const out = gl || clip ? { pixels: addClip(rounded, pred) } : { rounded };
    return { p: null, ...out, latentMs: performance.now() - t0, synthMs: 0 };
  }
  let p;
  if (type === FRAME_I) {
    if (nEsc) throw new BitstreamError("escape count on an intra frame");
    p = parsePayload(require(chunks, "FLD ")[0], width, height);
  } else if (type === FRAME_P_NET) {
    if (nEsc) throw new BitstreamError("escape count outside the field payload");
    p = parsePayload(require(chunks, "FLD ")[0], width, height);
  } else {
    if (!net) throw new BitstreamError("predicted frame without its group's networks");
    let nLat = 0;
    for (const g of fieldGrids(height, width)) nLat += g.height * g.width;
    p = { ...net, ...parseLatents(chunks, nLat, nEsc) };
  }
  const latents = decodeLatents(p, tb);
  const t1 = performance.now();
  const out = gl ? { pixels: gl.run(p, latents, width, height, pred) }
    : clip ? { pixels: synthesize(p, latents, width, height, pred) } : { rounded: synthesizeRounded(p, latents, width, height) };
  return { p, ...out, latentMs: t1 - t0, synthMs: performance.now() - t1 };
}

// The networks a frame leaves for the group's later frames (null after an intra frame)
export function groupNet(type, p, state) {
  if (type === FRAME_I) return null;
  if (type === FRAME_P_NET) return { ...p, words: null, excess: null };
  return state.net;
}

// dappled.codec.field.video.decoder.apply_frame: one frame payload against the previous state
// ({ frame, net } or null) -> { frame (RGB bytes), net, type, latentMs, synthMs }. gl: a
// FieldSynthGL for the WebGL2 synthesis (within +-1 a frame), else the exact JavaScript one.
export function applyFrame(payload, state, width, height, tb, gl = null) {
  if (width * height > MAX_PIXELS) throw new BitstreamError(`field streams are limited to ${MAX_PIXELS} pixels, got ${width}x${height}`);
  const head = frameHead(payload);
  const pred = predict(head, state, width, height);
  const r = residualOf(head, state ? state.net : null, width, height, tb, gl, pred, true);
  const frame = r.pixels;
  return { frame, net: groupNet(head.type, r.p, state), type: head.type, latentMs: r.latentMs, synthMs: r.synthMs };
}

// The player's decoder for field video streams: packets one at a time, from any intra frame.
// decode() -> { rgb, latentMs, synthMs, type }; the rgb stays valid (the reference is a new array
// every frame).
export class FieldVideoDecoder {
  constructor(header, tables, gl = null) {
    if (header.codecId !== FIELDV_CODEC_ID) throw new BitstreamError(`not a field video stream (codec id ${header.codecId})`);
    this.header = header;
    this.tables = tables;
    this.gl = gl;
    this.reset();
  }
  reset() { this.state = null; this.lastFrame = null; }
  decode(packet) {
    if (this.state && this.lastFrame !== null && packet.frame !== this.lastFrame + 1 && !packet.keyframe)
      throw new BitstreamError(`predicted frame ${packet.frame} does not follow frame ${this.lastFrame}`);
    const r = applyFrame(packet.payload, packet.keyframe ? null : this.state, this.header.width, this.header.height, this.tables, this.gl);
    this.state = { frame: r.frame, net: r.net };
    this.lastFrame = packet.frame;
    return { rgb: r.frame, latentMs: r.latentMs, synthMs: r.synthMs, type: r.type };
  }
}
