// The field image decoder in the browser: a port of dappled/codec/field/{format,decoder}.py,
// dappled/entropy/latent/ (integer ARM, Laplace tables, rANS with escapes) and
// dappled/models/field/synthesis.py (exact dyadic synthesis). Spec: docs/format.md, "Field payload".
//
// Exactness: the ARM's integers stay below 2**53 (|w| < 2**15, activations clamped to 2**30,
// at most 64 + 16 inputs), so plain doubles hold them exactly; the synthesis values are dyadic
// rationals with bounded numerators, exact in float64 in any order (as in Python). The latents
// and the pixels are therefore bit-identical to the Python decoder's (tests/test_web_field.py).
// The coding tables are built in Python with deterministic float math and shipped as data
// (field-tables.bin.gz, made by dappled/codec/field/web_tables.py).

import { BitstreamError, decodeNonneg, decodeSymbols, unpackChunks } from "./dpl.js";

export const FIELD_CODEC_ID = 5;
const READ_VERSIONS = [1, 2];
const MAX_PIXELS = 1 << 24;
const LEVELS = 7;
const KMAX = 16;
const WMAX = 32767;
const QMAX = 4095;
const LATENTS_PER_BIT = 2840;
const MAX_ESCAPES_PER_BYTE = 64;
const PAD = 3;
const FRAC_BITS = 8;
const ACT_CLAMP = 2 ** 30;
const LS_MIN_FP = -1001;
const LS_SPAN = 1065 - LS_MIN_FP;
const SCALE_LEVELS = 64;
const NEIGHBOURS = [
  [0, -1], [-1, 0], [-1, -1], [-1, 1], [0, -2], [-2, 0], [-1, -2], [-1, 2],
  [-2, -1], [-2, 1], [0, -3], [-3, 0], [-2, -2], [-2, 2], [-1, -3], [-1, 3],
];
const ACT_BITS = 12, ACT_LIMIT = 256, ACC_BITS = 24, ACC_LIMIT = 2 ** 20;

// ------------------------------------------------------------------ tables

let tablesPromise = null;

// The 1024 Laplace tables: cdf (Int32Array, all tables), start, nsym, lo (Int32Array each).
export function parseTables(buf) {
  const b = new Uint8Array(buf);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (b.length < 7 || String.fromCharCode(b[0], b[1], b[2], b[3]) !== "DFLT" || b[4] !== 2)
    throw new Error("field-tables.bin.gz is not a version 2 table file");
  const n = dv.getUint16(5, true);
  const nsym = new Int32Array(n), lo = new Int32Array(n), start = new Int32Array(n);
  let total = 0;
  for (let t = 0; t < n; t++) {
    nsym[t] = dv.getUint16(7 + 4 * t, true);
    lo[t] = dv.getInt16(9 + 4 * t, true);
    start[t] = total + t;
    total += nsym[t];
  }
  let pos = 7 + 4 * n;
  if (b.length !== pos + 2 * total) throw new Error("field-tables.bin.gz has the wrong size");
  const cdf = new Int32Array(total + n);
  for (let t = 0; t < n; t++) {
    let c = 0, f = 0, o = start[t];
    cdf[o] = 0;
    for (let s = 0; s < nsym[t]; s++, pos += 2) { // frequencies are delta coded modulo 2**16
      f = (f + dv.getUint16(pos, true)) & 0xffff;
      if (f === 0) throw new Error(`field-tables.bin.gz: table ${t} has a zero frequency`);
      c += f;
      cdf[o + s + 1] = c;
    }
    if (c !== 65536) throw new Error(`field-tables.bin.gz: table ${t} does not sum to 2**16`);
  }
  return { cdf, start, nsym, lo, count: n };
}

// The shipped tables, fetched once (next to this module) and gunzipped.
export function loadTables() {
  if (!tablesPromise) {
    tablesPromise = fetch(new URL("./field-tables.bin.gz", import.meta.url)).then((r) => {
      if (!r.ok) throw new Error(`cannot load the field decoder's tables (HTTP ${r.status})`);
      return new Response(r.body.pipeThrough(new DecompressionStream("gzip"))).arrayBuffer();
    }).then(parseTables);
    tablesPromise.catch(() => { tablesPromise = null; });
  }
  return tablesPromise;
}

// ------------------------------------------------------------------ layout

export function fieldGrids(height, width) {
  const out = [];
  for (const [channel, l0] of [[0, 0], [1, 1], [2, 1]]) {
    for (let lv = l0; lv < LEVELS; lv++) {
      out.push({ channel, level: lv, height: Math.ceil(height / 2 ** lv), width: Math.ceil(width / 2 ** lv) });
    }
  }
  return out;
}

function step(level, shift, ladder) {
  let base;
  if (level === 0) base = 0.125;
  else if (ladder === 0) base = 3.0 / 2 ** (level + 4);
  else base = (0.1875 / 2 ** Math.floor(level / 2)) * (level % 2 ? 0.75 : 1.0);
  return base * 2 ** shift;
}

function tensorShapes(a, nGrids) {
  const h = a.armHidden, c = a.ctx;
  const s = [[h, c], [h]];
  if (a.armLayers === 2) s.push([h, h], [h]);
  s.push([2, h + c], [nGrids, 2]);
  const sh = a.synthHidden, rh = a.resHidden;
  s.push([sh, nGrids], [sh], [3, sh], [3], [rh, 3, 3, 3], [rh], [3, rh, 3, 3], [3]);
  return s;
}

const prod = (s) => s.reduce((x, y) => x * y, 1);

// ------------------------------------------------------------------ payload

// dappled.codec.field.format.unpack_payload: every check the Python parser makes
export function parsePayload(payload, width, height) {
  if (width * height > MAX_PIXELS) throw new BitstreamError(`field streams are limited to ${MAX_PIXELS} pixels, got ${width}x${height}`);
  const chunks = unpackChunks(payload);
  const missing = ["HEAD", "NET ", "LAT "].filter((t) => !chunks.has(t));
  if (missing.length) throw new BitstreamError(`payload lacks chunk(s) ${missing.join(", ")}`);
  const head = chunks.get("HEAD"), netBytes = chunks.get("NET "), lat = chunks.get("LAT ");
  if (head.length < 12) throw new BitstreamError("field header is too short");
  const version = head[0];
  const arch = { ctx: head[1], armHidden: head[2], armLayers: head[3], synthHidden: head[4], resHidden: head[5] };
  const shift = (head[6] << 24) >> 24, ladder = head[7];
  const nEsc = (head[8] | (head[9] << 8) | (head[10] << 16)) + head[11] * 16777216;
  if (!READ_VERSIONS.includes(version)) throw new BitstreamError(`unsupported field payload version ${version}`);
  if (shift < -3 || shift > 2 || (ladder !== 0 && ladder !== 1)) throw new BitstreamError(`field step shift ${shift} or ladder ${ladder} out of range`);
  const a = arch;
  if (!(a.ctx >= 1 && a.ctx <= 16 && a.armHidden >= 1 && a.armHidden <= 64 && (a.armLayers === 1 || a.armLayers === 2)
        && a.synthHidden >= 6 && a.synthHidden <= 64 && a.resHidden >= 0 && a.resHidden <= 32))
    throw new BitstreamError(`field architecture out of range: ${JSON.stringify(a)}`);
  const gs = fieldGrids(height, width);
  const shapes = tensorShapes(arch, gs.length);
  const nArm = 2 * (arch.armLayers + 1);
  if (version === 1) shapes[nArm - 1] = [2];
  const ks = head.subarray(12);
  if (ks.length !== shapes.length) throw new BitstreamError("field header has the wrong number of weight steps");
  for (const k of ks) if (k > KMAX) throw new BitstreamError("weight step out of range");
  let nInts = 0;
  for (const s of shapes) nInts += prod(s);
  const u = decodeNonneg(netBytes, nInts);
  if (u.length !== nInts) throw new BitstreamError(`field network has ${u.length} weights where ${nInts} are needed`);
  const ints = new Float64Array(nInts);
  for (let i = 0; i < nInts; i++) {
    const v = u[i] % 2 === 0 ? u[i] / 2 : -(u[i] + 1) / 2;
    if (Math.abs(v) > WMAX) throw new BitstreamError("field weight out of range");
    ints[i] = v;
  }
  const tensors = [];
  let pos = 0;
  for (let j = 0; j < shapes.length; j++) {
    const n = prod(shapes[j]);
    tensors.push({ ints: ints.subarray(pos, pos + n), k: ks[j], shape: shapes[j] });
    pos += n;
  }
  if (version === 1) { // one output bias row, repeated for every grid
    const bo = tensors[nArm - 1];
    const rows = new Float64Array(2 * gs.length);
    for (let g = 0; g < gs.length; g++) rows.set(bo.ints, 2 * g);
    tensors[nArm - 1] = { ints: rows, k: bo.k, shape: [gs.length, 2] };
  }
  let nLat = 0;
  for (const g of gs) nLat += g.height * g.width;
  const { words, excess } = parseLatents(chunks, nLat, nEsc);
  return { version, arch, shift, ladder, gs, arm: tensors.slice(0, nArm), synth: tensors.slice(nArm), words, excess };
}

// dappled.codec.field.format.parse_latents: the rANS words (LAT) and the escape excesses (ESC) of
// nLat latents with nEsc escapes, checked against what they can code. A field video's later
// predicted frames carry these chunks alone (fieldv.js).
export function parseLatents(chunks, nLat, nEsc) {
  if (!chunks.has("LAT ")) throw new BitstreamError("payload lacks chunk(s) LAT ");
  const lat = chunks.get("LAT ");
  if (nLat > LATENTS_PER_BIT * (8 * lat.length + 64)) throw new BitstreamError(`${lat.length} bytes of latents cannot code ${nLat} latents`);
  if (lat.length > 4 * (nLat + 2)) throw new BitstreamError("latent stream is longer than its latents can need");
  if (nEsc > nLat) throw new BitstreamError("more escapes than latents");
  const escBytes = chunks.has("ESC ") ? chunks.get("ESC ").length : 0;
  if (nEsc > MAX_ESCAPES_PER_BYTE * (escBytes + 16)) throw new BitstreamError(`${escBytes} bytes of escapes cannot code ${nEsc} escapes`);
  let excess;
  if (nEsc) {
    if (!chunks.has("ESC ")) throw new BitstreamError("payload lacks chunk(s) ESC ");
    excess = decodeSymbols(chunks.get("ESC "), nEsc);
    if (excess.length !== nEsc) throw new BitstreamError(`${excess.length} escape values where ${nEsc} were declared`);
    for (const v of excess) if (v === 0 || Math.abs(v) > 2 * QMAX + 2) throw new BitstreamError("escape value out of range");
  } else {
    if (chunks.has("ESC ")) throw new BitstreamError("escape values without escapes");
    excess = new Float64Array(0);
  }
  const nWords = Math.ceil(lat.length / 4);
  const words = new Float64Array(nWords);
  for (let i = 0; i < lat.length; i++) words[i >> 2] += lat[i] * 2 ** (8 * (i & 3));
  return { words, excess };
}

// ------------------------------------------------------------------ latents (ARM + rANS)

const _rshift = (v, k) => (k === 0 ? v : Math.floor((v + 2 ** (k - 1)) / 2 ** k));
const _clampAct = (v) => (v > ACT_CLAMP ? ACT_CLAMP : v < -ACT_CLAMP ? -ACT_CLAMP : v);

// Padded grids (PAD zero columns either side, PAD zero rows above) and the compact grids the
// decoder returns, kept across frames: every interior value is written by each decode and the
// padding never is. The grids returned are valid until the next decode of the same size.
let latentSpace = null;
const BIG = 1 << 30;
function latentWorkspace(gs) {
  const key = gs.map((g) => `${g.height}x${g.width}`).join(",");
  if (latentSpace && latentSpace.key === key) return latentSpace;
  latentSpace = {
    key,
    bufs: gs.map((g) => new Int32Array((g.height + PAD) * (g.width + 2 * PAD))),
    grids: gs.map((g) => new Int32Array(g.height * g.width)),
    // per padded row, the first and last columns of its non-zero latents (none: BIG, -BIG)
    rowLo: gs.map((g) => new Int32Array(g.height + PAD).fill(BIG)),
    rowHi: gs.map((g) => new Int32Array(g.height + PAD).fill(-BIG)),
  };
  return latentSpace;
}

// dappled.entropy.latent.codec._decode_all: the grids (Int32Array each, raster order)
//
// Speed: the context of a latent is all zero when the PAD rows above hold no non-zero latent within
// PAD columns of it and neither do the last PAD latents of its row (each row's non-zero columns
// are tracked as a span: no neighbour is read then); with a zero context the table is the grid's
// first one, whose most probable symbol is tested before the binary search. The rANS state is two
// doubles (high 31 bits, low 32 bits), updated with the same integer arithmetic as before. Each
// loop nest is a function of its own, so that the JIT optimises each as soon as it runs hot
// (one large function is deoptimised each time the execution reaches a loop it has not run yet).
export function decodeLatents(p, tb) {
  if (wasmOn(p.gs[0].width, p.gs[0].height)) {
    const r = decodeLatentsWasm(p, tb);
    if (r) return r;
  }
  const { arch, gs, words, excess } = p;
  const c = arch.ctx, h = arch.armHidden, two = arch.armLayers === 2;
  const [w1, b1] = p.arm, [w2, b2] = two ? p.arm.slice(2, 4) : [null, null];
  const [wo, bo] = p.arm.slice(-2);
  const A = {
    c, h, two, k1: w1.k, k2: two ? w2.k : 0, ko: wo.k,
    W1: w1.ints, B1: b1.ints, W2: two ? w2.ints : b1.ints, B2: two ? b2.ints : b1.ints, WO: wo.ints, BO: bo.ints,
    a1: new Float64Array(h), a2: new Float64Array(h), ctx: new Float64Array(c), out: new Float64Array(4),
  };
  const nw = words.length;
  // the rANS state (xhi * 2**32 + xlo), the next word, the next escape value
  const st = new Float64Array([nw > 0 ? words[0] : 0, (nw > 1 ? words[1] : 0) % 2147483648, 2, 0]);
  const nb = NEIGHBOURS.slice(0, c);
  const ws = latentWorkspace(gs);
  const rel = new Int32Array(c);
  for (let g = 0; g < gs.length; g++) {
    const H = gs[g].height, Wd = gs[g].width, stride = Wd + 2 * PAD;
    for (let i = 0; i < c; i++) rel[i] = nb[i][0] * stride + nb[i][1];
    A.ctx.fill(0);
    armPredict(A, g);
    decodeGrid(A, g, st, words, excess, tb, ws.bufs[g], ws.rowLo[g], ws.rowHi[g], H, Wd, rel);
    const grid = ws.grids[g], buf = ws.bufs[g];
    for (let y = 0; y < H; y++) grid.set(buf.subarray((PAD + y) * stride + PAD, (PAD + y) * stride + PAD + Wd), y * Wd);
  }
  if (st[3] !== excess.length) throw new BitstreamError("field latents: escape values left over");
  return ws.grids;
}

// the ARM's (mu, log scale) of grid g for the context A.ctx, into A.out
function armPredict(A, g) {
  const { c, h, W1, B1, W2, B2, WO, BO, a1, a2, ctx, k1, k2, ko } = A;
  for (let j = 0; j < h; j++) {
    let acc = B1[j];
    for (let i = 0; i < c; i++) acc += W1[j * c + i] * ctx[i];
    const v = _clampAct(_rshift(acc * 256, k1));
    a1[j] = v > 0 ? v : 0;
  }
  let last = a1;
  if (A.two) {
    for (let j = 0; j < h; j++) {
      let acc = B2[j] * 256;
      for (let i = 0; i < h; i++) acc += W2[j * h + i] * a1[i];
      const v = _clampAct(_rshift(acc, k2));
      a2[j] = v > 0 ? v : 0;
    }
    last = a2;
  }
  const m = h + c;
  let o0 = 0, o1 = 0, c0 = BO[2 * g], c1 = BO[2 * g + 1];
  for (let i = 0; i < h; i++) { o0 += WO[i] * last[i]; o1 += WO[m + i] * last[i]; }
  for (let i = 0; i < c; i++) { c0 += WO[h + i] * ctx[i]; c1 += WO[m + h + i] * ctx[i]; }
  A.out[0] = _clampAct(_rshift(o0 + c0 * 256, ko));
  A.out[1] = _clampAct(_rshift(o1 + c1 * 256, ko));
}

// the Laplace table of the ARM's output A.out[0..1] and its centre, into A.out[2..3]
function tableOf(A) {
  const mu = A.out[0], ls = A.out[1];
  let si = Math.floor(((ls - LS_MIN_FP) * (SCALE_LEVELS - 1) + (LS_SPAN >> 1)) / LS_SPAN);
  si = si < 0 ? 0 : si > SCALE_LEVELS - 1 ? SCALE_LEVELS - 1 : si;
  const q16 = Math.floor((mu + 8) / 16);
  A.out[2] = si * 16 + (q16 & 15);
  A.out[3] = Math.floor(q16 / 16);
}

// one grid's latents into buf (padded), A.out holding the zero context's prediction
function decodeGrid(A, g, st, words, excess, tb, buf, rowLo, rowHi, H, Wd, rel) {
  const { cdf, start, nsym, lo: tlo } = tb;
  const c = A.c, ctx = A.ctx, nw = words.length, stride = Wd + 2 * PAD;
  let xlo = st[0], xhi = st[1], ptr = st[2], e = st[3];
  // the table of a zero context, and its most probable symbol
  tableOf(A);
  const t0 = A.out[2], centre0 = A.out[3];
  const first0 = start[t0], n0 = nsym[t0];
  let lz = 0;
  for (let s = 1; s < n0; s++) if (cdf[first0 + s + 1] - cdf[first0 + s] > cdf[first0 + lz + 1] - cdf[first0 + lz]) lz = s;
  const csZ = cdf[first0 + lz], fZ = cdf[first0 + lz + 1] - csZ;
  const qZ = tlo[t0] + lz;
  const escZ = lz === n0 - 1;
  for (let y = 0; y < H; y++) {
    // the columns within PAD of a non-zero latent in rows y - 3 .. y - 1 (padded: row y + PAD)
    const aLo = Math.min(rowLo[y], rowLo[y + 1], rowLo[y + 2]) - PAD;
    const aHi = Math.max(rowHi[y], rowHi[y + 1], rowHi[y + 2]) + PAD;
    let lastNz = -PAD - 1, lo = BIG, hi = -BIG;
    let at = (PAD + y) * stride + PAD;
    for (let x = 0; x < Wd; x++, at++) {
      let tid = t0, centre = centre0;
      if ((x >= aLo && x <= aHi) || x - lastNz <= PAD) {
        let nz = false;
        for (let i = 0; i < c; i++) { const v = buf[at + rel[i]]; ctx[i] = v; if (v !== 0) nz = true; }
        if (nz) {
          armPredict(A, g);
          tableOf(A);
          tid = A.out[2];
          centre = A.out[3];
        }
      }
      // rANS symbol (CompressAI Rans64, 16-bit precision) under table tid
      const cf = xlo & 0xffff;
      let l, cs, freq;
      if (tid === t0 && cf - csZ >= 0 && cf - csZ < fZ) {
        l = lz; cs = csZ; freq = fZ;
      } else {
        const first = start[tid], n = nsym[tid];
        let r = n;
        l = 0;
        while (r - l > 1) { const mid = (l + r) >> 1; if (cdf[first + mid] <= cf) l = mid; else r = mid; }
        cs = cdf[first + l]; freq = cdf[first + l + 1] - cs;
      }
      const low = freq * ((xhi & 0xffff) * 65536 + (xlo >>> 16)) + cf - cs;
      const carry = Math.floor(low * 2.3283064365386963e-10); // / 2**32, exactly
      xlo = low - carry * 4294967296;
      xhi = freq * (xhi >>> 16) + carry;
      if (xhi === 0 && xlo < 2147483648) { xhi = xlo; xlo = ptr < nw ? words[ptr] : 0; ptr++; }
      let q;
      if (tid === t0 && l === lz && !escZ) {
        q = centre + qZ;
      } else if (l === nsym[tid] - 1) { // escape: the excess beyond the table's edge
        if (e >= excess.length) throw new BitstreamError("field latents: more escapes than escape values");
        const ex = excess[e++];
        q = centre + (ex > 0 ? tlo[tid] + nsym[tid] - 2 + ex : tlo[tid] + ex);
      } else {
        q = centre + tlo[tid] + l;
      }
      if (q > QMAX || q < -QMAX) throw new BitstreamError("field latents: latent out of range");
      buf[at] = q;
      if (q !== 0) { lastNz = x; if (x < lo) lo = x; hi = x; }
    }
    rowLo[y + PAD] = lo;
    rowHi[y + PAD] = hi;
  }
  st[0] = xlo; st[1] = xhi; st[2] = ptr; st[3] = e;
}

// ------------------------------------------------------------------ synthesis (exact, float64)
//
// Speed (issue 19): the buffers live in a workspace kept across frames, the loops run over
// contiguous rows with the weights hoisted, and the work the stream says is constant is skipped.
// A latent of 0 adds nothing to the mix. The network has constants: its hidden and RGB values
// where the level-1 accumulator and the level-0 latent are 0, and the residual block's values
// where its inputs are those; they are computed once a frame by the same operations. A pixel takes
// them without computing: its hidden values where its 4 level-1 cells give the constant hidden
// values (the hidden layer is non-decreasing in its input, and a pixel's input lies between its
// 4 cells' values: see synthesizeRounded), its RGB where its hidden values or RGB are the
// constants (c0), the first convolution's output where its 9 inputs are (c1: a 3x3 erosion of
// c0, zero-padded border excluded), the second's where those 9 are (c2). So the full-size layers
// and the residual block run only near the non-zero latents. Every value computed is computed by
// the same operations in the same order as before, so the pixels stay the Python decoder's, bit
// for bit (tests/test_web_field.py, tests/test_web_fieldv.py).

// round to a multiple of 1/s (s a power of two: times 1/s is the exact division), clamp to +-lim
const rnd = (v, s, lim) => { const r = Math.floor(v * s + 0.5) * (1 / s); return r > lim ? lim : r < -lim ? -lim : r; };
export const values = (t) => { const s = 2 ** -t.k, o = new Float64Array(t.ints.length); for (let i = 0; i < o.length; i++) o[i] = t.ints[i] * s; return o; };
// the synthesis weights' values, once per network (a group's frames share it)
const weightValues = new WeakMap();
function synthValues(p) {
  let v = weightValues.get(p.synth);
  if (!v) { v = p.synth.map(values); weightValues.set(p.synth, v); }
  return v;
}
const ACC_S = 2 ** ACC_BITS, ACT_S = 2 ** ACT_BITS, INV_ACC = 1 / ACC_S, INV_ACT = 1 / ACT_S;

// the column taps of a 2x upsampling from w to cols: cm (nearer), cp (farther), as in Python's _up2
function upTaps(w, cols) {
  const cm = new Int32Array(cols), cp = new Int32Array(cols);
  for (let j = 0; j < cols; j++) {
    const k = j >> 1;
    cm[j] = Math.min(k, w - 1);
    cp[j] = j % 2 === 0 ? Math.max(k - 1, 0) : Math.min(k + 1, w - 1);
  }
  return { cm, cp };
}

// Buffers for one frame size and network shape, reused frame after frame
let workspace = null;
function getWorkspace(width, height, S, R) {
  const key = `${width}x${height}:${S}:${R}`;
  if (workspace && workspace.key === key) return workspace;
  const levels = [];
  for (let lv = 1; lv < LEVELS; lv++) {
    const rows = Math.ceil(height / 2 ** lv), cols = Math.ceil(width / 2 ** lv);
    levels[lv] = { rows, cols, acc: new Float64Array(S * rows * cols), ...upTaps(Math.ceil(width / 2 ** (lv + 1)), cols) };
  }
  const a1 = levels[1];
  const pw = width + 2, pn = pw * (height + 2);
  workspace = {
    key, levels,
    vr: new Float64Array(S * a1.cols), z1: new Uint8Array(a1.rows * a1.cols), rowZ: new Uint8Array(a1.cols),
    m1: new Int32Array(a1.rows * a1.cols), rowM: new Int32Array(a1.cols),
    hid: new Float64Array(S), wa0: new Float64Array(S), full: upTaps(a1.cols, width),
    pw, pn,
    rgb: new Float64Array(3 * pn), // zero-bordered planes (the convolutions' padding)
    t: new Float64Array(Math.max(R, 1) * pn),
    tr: new Float64Array(width), tr2: new Float64Array(width),
    c0: new Uint8Array(pn), c1: new Uint8Array(pn), c2: new Uint8Array(pn), ctmp: new Uint8Array(pn),
  };
  return workspace;
}

// dst = 3x3 erosion of src (zero-bordered masks of the padded size): 1 where all 9 are 1
function erode(src, dst, tmp, w, h, pw) {
  for (let y = 1; y <= h; y++) {
    const r = y * pw;
    for (let x = 1; x <= w; x++) tmp[r + x] = src[r + x - 1] & src[r + x] & src[r + x + 1];
  }
  for (let y = 1; y <= h; y++) {
    const r = y * pw;
    for (let x = 1; x <= w; x++) dst[r + x] = tmp[r - pw + x] & tmp[r + x] & tmp[r + pw + x];
  }
}

// the indices of the (one to three) grids of level lv, -1 for those it lacks
function levelGrids(gs, lv) {
  const out = [-1, -1, -1];
  let n = 0;
  for (let g = 0; g < gs.length; g++) if (gs[g].level === lv) out[n++] = g;
  return out;
}

// The level accumulator at level 1 (S planes of ah x aw), exact: acc_l = rho24(up2(acc_(l+1)) +
// z_l) from level 6 to level 1. Shared by the JavaScript and the WebGL2 synthesis. The planes are
// the workspace's (valid until the next call).
export function coarseAccumulator(p, latents, width, height) {
  const { gs, arch } = p;
  const S = arch.synthHidden, G = gs.length;
  const ws = getWorkspace(width, height, S, arch.resHidden);
  const wa = synthValues(p)[0];
  let prev = null;
  for (let lv = LEVELS - 1; lv >= 1; lv--) {
    const L = ws.levels[lv], rows = L.rows, cols = L.cols, n = rows * cols, next = L.acc;
    if (prev === null) next.fill(0);
    else { // 2x upsampling of the level below (taps 3/4, 1/4, clamped)
      const h = prev.rows, w = prev.cols, x = prev.acc, cm = L.cm, cp = L.cp;
      for (let s = 0; s < S; s++) {
        const xs = s * h * w, os = s * n;
        for (let i = 0; i < rows; i++) {
          const k = i >> 1;
          const rm = Math.min(k, h - 1), rp = i % 2 === 0 ? Math.max(k - 1, 0) : Math.min(k + 1, h - 1);
          const a = xs + rm * w, b = xs + rp * w, o = os + i * cols;
          for (let j = 0; j < cols; j++) {
            const c0 = cm[j], c1 = cp[j];
            const u = x[a + c0] * 0.75 + x[b + c0] * 0.25;
            const v = x[a + c1] * 0.75 + x[b + c1] * 0.25;
            next[o + j] = u * 0.75 + v * 0.25;
          }
        }
      }
    }
    const st = step(lv, p.shift, p.ladder);
    const [g0, g1, g2] = levelGrids(gs, lv);
    const q0 = latents[g0], q1 = g1 >= 0 ? latents[g1] : null, q2 = g2 >= 0 ? latents[g2] : null;
    for (let i = 0; i < n; i++) {
      // the mix of the latents (0 where they all are: then it adds nothing)
      const a = q0[i], b = q1 ? q1[i] : 0, c = q2 ? q2[i] : 0;
      if (a === 0 && b === 0 && c === 0) continue;
      for (let s = 0; s < S; s++) {
        const wr = s * G;
        let z = wa[wr + g0] * (a * st);
        if (q1) z += wa[wr + g1] * (b * st);
        if (q2) z += wa[wr + g2] * (c * st);
        next[s * n + i] += z;
      }
    }
    for (let i = 0, m = S * n; i < m; i++) {
      const v = Math.floor(next[i] * ACC_S + 0.5) * INV_ACC;
      next[i] = v > ACC_LIMIT ? ACC_LIMIT : v < -ACC_LIMIT ? -ACC_LIMIT : v;
    }
    prev = L;
  }
  return { acc: prev.acc, ah: prev.rows, aw: prev.cols };
}

export const levelStep = step;

// dappled.models.field.synthesis.synthesize (numba path): RGB bytes, (H, W, 3) order. base: a
// video's prediction (Uint8Array, H x W x 3) or null; a pixel is then clip(base + round(255 v)).
export function synthesize(p, latents, width, height, base = null) {
  const ws = getWorkspace(width, height, p.arch.synthHidden, p.arch.resHidden);
  if (!ws.outI) ws.outI = new Int32Array(3 * width * height);
  return addClip(synthesizeRounded(p, latents, width, height, ws.outI), base);
}

// clip(base + r, 0, 255) as RGB bytes (base null: clip(r))
export function addClip(r, base = null) {
  const out = new Uint8Array(r.length);
  if (base) {
    for (let i = 0; i < r.length; i++) { const q = r[i] + base[i]; out[i] = q < 0 ? 0 : q > 255 ? 255 : q; }
  } else {
    for (let i = 0; i < r.length; i++) { const q = r[i]; out[i] = q < 0 ? 0 : q > 255 ? 255 : q; }
  }
  return out;
}

// 3x3 convolution sums b + sum k x at padded positions i0 .. i1 - 1 of one row into tr (zero
// padding; x: C planes of pn, rows of pw), in the order of dappled's per-row loop (each row of
// taps summed, then added), unrounded
function convSpan(x, C, pn, pw, k, ko, b, i0, i1, tr) {
  const n = i1 - i0;
  for (let j = 0; j < n; j++) tr[j] = b;
  for (let ci = 0; ci < C; ci++) {
    for (let dy = 0; dy < 3; dy++) {
      const kk = ko + ci * 9 + dy * 3, k0 = k[kk], k1 = k[kk + 1], k2 = k[kk + 2];
      const r = ci * pn + i0 + (dy - 1) * pw;
      for (let j = 0; j < n; j++) tr[j] += k0 * x[r + j - 1] + k1 * x[r + j] + k2 * x[r + j + 1];
    }
  }
}

// the same for inputs that are constants xc (one per plane)
function convConst(xc, C, k, ko, b) {
  let t = b;
  for (let ci = 0; ci < C; ci++) {
    const kb = ko + ci * 9, c = xc[ci];
    for (let dy = 0; dy < 3; dy++) t += k[kb + 3 * dy] * c + k[kb + 3 * dy + 1] * c + k[kb + 3 * dy + 2] * c;
  }
  return rnd(t, ACT_S, ACT_LIMIT);
}

// the hidden values where the accumulator and the level-0 latent are 0 (into hid)
function hiddenConstants(S, G, wa, ba, hid) {
  for (let s = 0; s < S; s++) {
    let v = 0 * 0.75 + 0 * 0.25 + wa[s * G] * (0 * 1);
    v = rnd(v, ACC_S, ACC_LIMIT);
    v = Math.floor((v + ba[s]) * ACT_S + 0.5) * INV_ACT;
    hid[s] = v > ACT_LIMIT ? ACT_LIMIT : v > 0 ? v : 0;
  }
}

// the RGB layer's output for those hidden values
function rgbConstants(S, wb, bb, hid) {
  const rgbC = new Float64Array(3);
  for (let c = 0; c < 3; c++) {
    let tc = bb[c];
    for (let s = 0; s < S; s++) tc += wb[c * S + s] * hid[s];
    rgbC[c] = rnd(tc, ACT_S, ACT_LIMIT);
  }
  return rgbC;
}

// the residual block's hidden values and output pixels where all its inputs are the constants
function residualConstants(R, rgbC, ka, kba, kb, kbb) {
  const tC = new Float64Array(R), outC = new Float64Array(3);
  for (let o = 0; o < R; o++) { const v = convConst(rgbC, 3, ka, o * 27, kba[o]); tC[o] = v > 0 ? v : 0; }
  for (let c = 0; c < 3; c++) outC[c] = Math.floor(rnd(rgbC[c] + convConst(tC, R, kb, c * 9 * R, kbb[c]), ACT_S, ACT_LIMIT) * 255 + 0.5);
  return { tC, outC };
}

// The synthesis output before the clip: round(255 v) per channel (Int32Array, (H, W, 3) order).
// A field video's residual is this, added to a prediction that may be another thread's.
// out: where to write it (a new array if none).
export function synthesizeRounded(p, latents, width, height, out = null) {
  if (wasmOn(width, height)) {
    const r = synthesizeRoundedWasm(p, latents, width, height, out);
    if (r) return r;
  }
  const { gs, arch } = p;
  const S = arch.synthHidden, R = arch.resHidden, G = gs.length;
  const [wa, ba, wb, bb, ka, kba, kb, kbb] = synthValues(p);
  const { acc, ah, aw } = coarseAccumulator(p, latents, width, height);
  const ws = getWorkspace(width, height, S, R);
  const { hid, pw, pn, c0, c1, c2, ctmp } = ws;
  const plane = ah * aw;
  hiddenConstants(S, G, wa, ba, hid);
  constCells(acc, plane, S, ba, hid, ws.m1, ws.z1);
  const rgbC = rgbConstants(S, wb, bb, hid);
  const wa0 = ws.wa0;
  for (let s = 0; s < S; s++) wa0[s] = wa[s * G];
  fullSize(acc, ah, aw, latents[0], step(0, p.shift, p.ladder), wa0, ba, wb, bb, rgbC, ws, width, height, S);
  if (!out) out = new Int32Array(3 * width * height);
  if (!R) {
    toPixels(ws.rgb, pw, pn, out, width, height);
    releaseIfLarge(width * height);
    return out;
  }
  // the residual block: t = relu(round(conv(rgb))) where its inputs are not all constants, then
  // res = round(conv(t)) and the output where those are not
  erode(c0, c1, ctmp, width, height, pw);
  const { tC, outC } = residualConstants(R, rgbC, ka, kba, kb, kbb);
  firstConv(ws.rgb, ws.t, c1, tC, ka, kba, R, pw, pn, width, height, ws.tr);
  erode(c1, c2, ctmp, width, height, pw);
  secondConv(ws.rgb, ws.t, c0, c2, outC, kb, kbb, R, pw, pn, width, height, ws.tr, out);
  releaseIfLarge(width * height);
  return out;
}

// frames above KEEP_PIXELS do not keep their buffers (hundreds of megabytes at 16 Mpixel)
const KEEP_PIXELS = 1 << 22;
function releaseIfLarge(n) {
  if (n > KEEP_PIXELS) { workspace = null; latentSpace = null; }
}

// z1: the level-1 cells whose value on every plane gives the constant hidden value. A full-size
// pixel's value on a plane (before the hidden layer) is its 4 level-1 cells' values blended with
// non-negative weights, rounded to 2**-24 (plus its level-0 latent's mix), so with that latent 0
// it lies between the 4 values (all multiples of 2**-24); the hidden layer, round(v + b) then
// ReLU, is non-decreasing in v: where the 4 cells are in z1 the pixel's hidden values are the
// constants, and so is its RGB. m1: the same plane by plane, a bit for each of the first 31.
function constCells(acc, plane, S, ba, hid, m1, z1) {
  const full = S < 31 ? (1 << S) - 1 : 0x7fffffff;
  for (let j = 0; j < plane; j++) {
    let m = 0, high = 1; // planes past the 31st: only in z1
    for (let s = 0; s < S; s++) {
      const v = Math.floor((acc[s * plane + j] + ba[s]) * ACT_S + 0.5) * INV_ACT;
      if ((v > ACT_LIMIT ? ACT_LIMIT : v > 0 ? v : 0) === hid[s]) { if (s < 31) m |= 1 << s; } else if (s >= 31) high = 0;
    }
    m1[j] = m;
    z1[j] = m === full && high ? 1 : 0;
  }
}

// full size: up2(acc_1) + level 0 mix, ReLU layer, RGB layer, pixel by pixel (the same
// operations in the same order as dappled's _full_size), the constants where nothing differs;
// ws.rgb (zero-bordered planes) and ws.c0 (1: the pixel's RGB is the constants)
function fullSize(acc, ah, aw, q0, st0, wa0, ba, wb, bb, rgbC, ws, width, height, S) {
  const { vr, z1, rowZ, m1, rowM, hid, pw, pn, rgb, c0 } = ws;
  const { cm, cp } = ws.full;
  const plane = ah * aw;
  const wb0 = wb.subarray(0, S), wb1 = wb.subarray(S, 2 * S), wb2 = wb.subarray(2 * S, 3 * S);
  const rc0 = rgbC[0], rc1 = rgbC[1], rc2 = rgbC[2], bb0 = bb[0], bb1 = bb[1], bb2 = bb[2];
  for (let y = 0; y < height; y++) {
    const k = y >> 1;
    const ym = Math.min(k, ah - 1), yp = y % 2 === 0 ? Math.max(k - 1, 0) : Math.min(k + 1, ah - 1);
    const zm = ym * aw, zp = yp * aw;
    for (let j = 0; j < aw; j++) { rowZ[j] = z1[zm + j] & z1[zp + j]; rowM[j] = m1[zm + j] & m1[zp + j]; }
    for (let s = 0; s < S; s++) { // the vertical taps of the row, once for all its pixels
      const r1 = s * plane + zm, r2 = s * plane + zp, o = s * aw;
      for (let j = 0; j < aw; j++) vr[o + j] = acc[r1 + j] * 0.75 + acc[r2 + j] * 0.25;
    }
    const qrow = y * width, prow = (y + 1) * pw + 1;
    for (let x = 0; x < width; x++) {
      const q = q0[qrow + x], xm = cm[x], xp = cp[x], o = prow + x;
      if (q === 0 && (rowZ[xm] & rowZ[xp])) {
        rgb[o] = rc0; rgb[pn + o] = rc1; rgb[2 * pn + o] = rc2; c0[o] = 1;
        continue;
      }
      c0[o] = 0;
      const qv = q * st0;
      const mask = q === 0 ? rowM[xm] & rowM[xp] : 0; // the planes whose hidden value is the constant
      let t0 = bb0, t1 = bb1, t2 = bb2;
      for (let s = 0; s < S; s++) {
        if (s < 31 && (mask >> s) & 1) { const hv = hid[s]; t0 += wb0[s] * hv; t1 += wb1[s] * hv; t2 += wb2[s] * hv; continue; }
        const vo = s * aw;
        let v = vr[vo + xm] * 0.75 + vr[vo + xp] * 0.25;
        if (q !== 0) v += wa0[s] * qv; // (a zero latent adds 0)
        v = Math.floor(v * ACC_S + 0.5) * INV_ACC;
        v = v > ACC_LIMIT ? ACC_LIMIT : v < -ACC_LIMIT ? -ACC_LIMIT : v;
        v = Math.floor((v + ba[s]) * ACT_S + 0.5) * INV_ACT;
        const hv = v > ACT_LIMIT ? ACT_LIMIT : v > 0 ? v : 0;
        t0 += wb0[s] * hv; t1 += wb1[s] * hv; t2 += wb2[s] * hv;
      }
      const r0 = rnd(t0, ACT_S, ACT_LIMIT), r1 = rnd(t1, ACT_S, ACT_LIMIT), r2 = rnd(t2, ACT_S, ACT_LIMIT);
      rgb[o] = r0; rgb[pn + o] = r1; rgb[2 * pn + o] = r2;
      if (r0 === rc0 && r1 === rc1 && r2 === rc2) c0[o] = 1; // the constants after all
    }
  }
}

// round(255 v) of the RGB planes, (H, W, 3) order (no residual block)
function toPixels(rgb, pw, pn, out, width, height) {
  for (let y = 0; y < height; y++) {
    const prow = (y + 1) * pw + 1;
    for (let x = 0, i = 3 * y * width; x < width; x++, i += 3) {
      const o = prow + x;
      out[i] = Math.floor(rgb[o] * 255 + 0.5); out[i + 1] = Math.floor(rgb[pn + o] * 255 + 0.5);
      out[i + 2] = Math.floor(rgb[2 * pn + o] * 255 + 0.5);
    }
  }
}

// t = relu(round(conv(rgb))): the constants tC where c1, computed over the runs of other pixels
// (c1 then also marks the computed pixels whose t is the constants)
function firstConv(rgb, t, c1, tC, ka, kba, R, pw, pn, width, height, tr) {
  for (let y = 1; y <= height; y++) {
    for (let i = y * pw + 1, e = i + width; i < e;) {
      if (c1[i]) { for (let o = 0; o < R; o++) t[o * pn + i] = tC[o]; i++; continue; }
      let i1 = i + 1;
      while (i1 < e && !c1[i1]) i1++;
      for (let o = 0; o < R; o++) {
        convSpan(rgb, 3, pn, pw, ka, o * 27, kba[o], i, i1, tr);
        for (let j = 0, to = o * pn + i; j < i1 - i; j++) {
          const v = Math.floor(tr[j] * ACT_S + 0.5) * INV_ACT;
          t[to + j] = v > ACT_LIMIT ? ACT_LIMIT : v > 0 ? v : 0;
        }
      }
      for (let j = i; j < i1; j++) { // the constants after all?
        let same = 1;
        for (let o = 0; o < R; o++) if (t[o * pn + j] !== tC[o]) { same = 0; break; }
        c1[j] = same;
      }
      i = i1;
    }
  }
}

// out = round(255 round(rgb + round(conv(t)))): the constants outC where c2 and c0
function secondConv(rgb, t, c0, c2, outC, kb, kbb, R, pw, pn, width, height, tr, out) {
  const oc0 = outC[0], oc1 = outC[1], oc2 = outC[2], k9 = 9 * R;
  for (let y = 1; y <= height; y++) {
    const r0 = y * pw + 1, e = r0 + width, jr = 3 * (y - 1) * width - 3 * r0;
    for (let i = r0; i < e;) {
      if (c2[i] & c0[i]) { const j = jr + 3 * i; out[j] = oc0; out[j + 1] = oc1; out[j + 2] = oc2; i++; continue; }
      let i1 = i + 1;
      while (i1 < e && !(c2[i1] & c0[i1])) i1++;
      for (let c = 0; c < 3; c++) {
        convSpan(t, R, pn, pw, kb, c * k9, kbb[c], i, i1, tr);
        for (let j = 0, ro = c * pn + i; j < i1 - i; j++) {
          let v = Math.floor(tr[j] * ACT_S + 0.5) * INV_ACT;
          v = v > ACT_LIMIT ? ACT_LIMIT : v < -ACT_LIMIT ? -ACT_LIMIT : v;
          v = Math.floor((rgb[ro + j] + v) * ACT_S + 0.5) * INV_ACT;
          v = v > ACT_LIMIT ? ACT_LIMIT : v < -ACT_LIMIT ? -ACT_LIMIT : v;
          out[jr + 3 * (i + j) + c] = Math.floor(v * 255 + 0.5);
        }
      }
      i = i1;
    }
  }
}

// ------------------------------------------------------------------ the decoder in WebAssembly

// field-decoder.wasm (built from src/field-decoder.ts): the latents' and the synthesis's loops
// above compiled ahead of time, the same arithmetic in the same order (the same latents and
// pixels), without the JavaScript engine's warm-up, which made a page's first frame 3-5x slower
// than the next ones. Used, once loaded (loadDecoderWasm), for frames up to KEEP_PIXELS; the
// JavaScript loops otherwise.
let wasmX = null; // the module's exports
let useWasm = true;
let wasmSpace = null; // the layout of the buffers in its memory, for one size and network shape
let wasmLoading = null;
let wasmTables = null; // the tables copied into it (the layout's first region)
const WASM_BASE = 65536; // the module keeps no data: the buffers start after its first page

async function instantiateDecoder(bytes) {
  const { instance } = await WebAssembly.instantiate(bytes, {});
  wasmX = instance.exports;
  wasmSpace = null;
  return true;
}

// Load field-decoder.wasm (fetched next to this module, or from bytes); resolves true once the
// WebAssembly loops are in use, false where WebAssembly is missing or the module cannot load
// (the JavaScript loops stay, with the same latents and pixels).
export function loadDecoderWasm(bytes = null) {
  if (typeof WebAssembly === "undefined") return Promise.resolve(false);
  if (bytes) return instantiateDecoder(bytes).catch(() => false);
  if (!wasmLoading) {
    wasmLoading = fetch(new URL("./field-decoder.wasm", import.meta.url)).then((r) => {
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      return r.arrayBuffer();
    }).then(instantiateDecoder).catch(() => { wasmLoading = null; return false; });
  }
  return wasmLoading;
}

// Choose the decoder's loops: "wasm" (once loaded) or "js"; returns the ones now in use.
export function exactBackend(name = null) {
  if (name !== null) useWasm = name !== "js";
  return wasmX && useWasm ? "wasm" : "js";
}

const wasmOn = (width, height) => wasmX !== null && useWasm && width * height <= KEEP_PIXELS;

// The buffers of a frame size and network (p) in the module's memory (remade, zeroed, when they
// change): the tables (tb, or those copied before), the latents' and the synthesis's workspaces.
function wasmWorkspace(p, width, height, tb = null) {
  const { gs, arch } = p;
  const S = arch.synthHidden, R = arch.resHidden, G = gs.length, c = arch.ctx, h = arch.armHidden;
  if (tb && tb !== wasmTables) wasmSpace = null;
  const key = `${width}x${height}:${S}:${R}:${c}:${h}:${G}`;
  if (wasmSpace && wasmSpace.key === key) return wasmSpace;
  wasmSpace = null;
  tb = tb || wasmTables;
  let off = WASM_BASE;
  const take = (bytes) => { const o = off; off += (bytes + 7) & ~7; return o; };
  const L = { key, levels: [], taps: [] };
  if (tb) L.tables = [tb.cdf, tb.start, tb.nsym, tb.lo].map((t) => take(4 * t.length));
  for (let lv = 1; lv < LEVELS; lv++) {
    const rows = Math.ceil(height / 2 ** lv), cols = Math.ceil(width / 2 ** lv);
    L.levels[lv] = { rows, cols, acc: take(8 * S * rows * cols), cm: take(4 * cols), cp: take(4 * cols) };
    L.taps.push([L.levels[lv], upTaps(Math.ceil(width / 2 ** (lv + 1)), cols)]);
  }
  const a1 = L.levels[1], plane = a1.rows * a1.cols;
  L.pw = width + 2;
  L.pn = L.pw * (height + 2);
  let nLat = 0;
  for (const g of gs) nLat += g.height * g.width;
  Object.assign(L, {
    vr: take(8 * S * a1.cols), z1: take(plane), rowZ: take(a1.cols), m1: take(4 * plane), rowM: take(4 * a1.cols),
    hid: take(8 * S), wa0: take(8 * S), cm: take(4 * width), cp: take(4 * width),
    rgb: take(8 * 3 * L.pn), t: take(8 * Math.max(R, 1) * L.pn), tr: take(8 * width),
    c0: take(L.pn), c1: take(L.pn), c2: take(L.pn), ctmp: take(L.pn), out: take(4 * 3 * width * height),
    q: gs.map((g) => take(4 * g.height * g.width)),
    rgbC: take(24), tC: take(8 * Math.max(R, 1)), outC: take(24),
    // the latents: padded grids, their rows' spans, the ARM, the words and escape values
    bufs: gs.map((g) => take(4 * (g.height + PAD) * (g.width + 2 * PAD))),
    rowLo: gs.map((g) => take(4 * (g.height + PAD))), rowHi: gs.map((g) => take(4 * (g.height + PAD))),
    rel: take(4 * c), a1: take(8 * h), a2: take(8 * h), ctx: take(8 * c),
    arm: [h * c, h, h * h, h, 2 * (h + c), 2 * G].map((n) => take(4 * n)), // W1, B1, W2, B2, WO, BO
    words: take(4 * (nLat + 2)), excess: take(4 * nLat), nLat,
  });
  L.w = [S * G, S, 3 * S, 3, 27 * R, R, 27 * R, 3].map((n) => take(8 * n)); // wa, ba, wb, bb, ka, kba, kb, kbb
  const mem = wasmX.memory, need = Math.ceil(off / 65536) - mem.buffer.byteLength / 65536;
  if (need > 0) mem.grow(need); // (a RangeError where the memory cannot grow: the caller falls back)
  const buf = mem.buffer;
  new Uint8Array(buf, WASM_BASE, off - WASM_BASE).fill(0); // zero borders and padding
  for (const [lvl, t] of L.taps) { new Int32Array(buf, lvl.cm, lvl.cols).set(t.cm); new Int32Array(buf, lvl.cp, lvl.cols).set(t.cp); }
  const full = upTaps(a1.cols, width);
  new Int32Array(buf, L.cm, width).set(full.cm);
  new Int32Array(buf, L.cp, width).set(full.cp);
  gs.forEach((g, k) => {
    new Int32Array(buf, L.rowLo[k], g.height + PAD).fill(BIG);
    new Int32Array(buf, L.rowHi[k], g.height + PAD).fill(-BIG);
  });
  if (tb) {
    [tb.cdf, tb.start, tb.nsym, tb.lo].forEach((t, k) => new Int32Array(buf, L.tables[k], t.length).set(t));
    wasmX.tablesSet(...L.tables);
    wasmTables = tb;
  }
  wasmSpace = L;
  return L;
}

// decodeLatents in the WebAssembly module (null where its memory cannot hold the frame)
function decodeLatentsWasm(p, tb) {
  const { arch, gs, words, excess } = p;
  const width = gs[0].width, height = gs[0].height;
  let L;
  try { L = wasmWorkspace(p, width, height, tb); } catch (e) { if (e instanceof RangeError) return null; throw e; }
  const X = wasmX, buf = X.memory.buffer;
  const c = arch.ctx, h = arch.armHidden, two = arch.armLayers === 2;
  const [w1, b1] = p.arm, [w2, b2] = two ? p.arm.slice(2, 4) : [null, null];
  const [wo, bo] = p.arm.slice(-2);
  const ints = [w1, b1, w2, b2, wo, bo];
  ints.forEach((t, k) => { if (t) new Int32Array(buf, L.arm[k], t.ints.length).set(t.ints); });
  X.armSet(c, h, two ? 1 : 0, w1.k, two ? w2.k : 0, wo.k, ...L.arm, L.a1, L.a2, L.ctx);
  const nw = words.length;
  if (nw > L.nLat + 2 || excess.length > L.nLat) throw new BitstreamError("field latents: more words than latents"); // (parseLatents refuses these)
  new Uint32Array(buf, L.words, nw).set(words);
  new Int32Array(buf, L.excess, excess.length).set(excess);
  X.ransInit(nw > 0 ? words[0] : 0, nw > 1 ? words[1] : 0);
  const nb = NEIGHBOURS.slice(0, c), rel = new Int32Array(buf, L.rel, c);
  const ws = latentWorkspace(gs);
  for (let g = 0; g < gs.length; g++) {
    const H = gs[g].height, Wd = gs[g].width, stride = Wd + 2 * PAD;
    for (let i = 0; i < c; i++) rel[i] = nb[i][0] * stride + nb[i][1];
    const r = X.decodeGrid(g, L.bufs[g], L.rowLo[g], L.rowHi[g], H, Wd, L.rel, L.words, nw, L.excess, excess.length);
    if (r === 1) throw new BitstreamError("field latents: more escapes than escape values");
    if (r === 2) throw new BitstreamError("field latents: latent out of range");
    const grid = ws.grids[g], padded = new Int32Array(buf, L.bufs[g], (H + PAD) * stride);
    for (let y = 0; y < H; y++) grid.set(padded.subarray((PAD + y) * stride + PAD, (PAD + y) * stride + PAD + Wd), y * Wd);
  }
  if (X.escapesUsed() !== excess.length) throw new BitstreamError("field latents: escape values left over");
  return ws.grids;
}

// synthesizeRounded on the WebAssembly module (null where its memory cannot hold the frame)
function synthesizeRoundedWasm(p, latents, width, height, out) {
  const { gs, arch } = p;
  const S = arch.synthHidden, R = arch.resHidden, G = gs.length;
  let L;
  try { L = wasmWorkspace(p, width, height); } catch (e) { if (e instanceof RangeError) return null; throw e; }
  const X = wasmX, buf = X.memory.buffer;
  const f64 = (o, n) => new Float64Array(buf, o, n);
  const vals = synthValues(p);
  vals.forEach((v, k) => f64(L.w[k], v.length).set(v));
  const [wa, ba, wb, bb, ka, kba, kb, kbb] = vals;
  const [pwa, pba, pwb, pbb, pka, pkba, pkb, pkbb] = L.w;
  gs.forEach((g, k) => new Int32Array(buf, L.q[k], g.height * g.width).set(latents[k]));
  // the level accumulators, level 6 to level 1 (coarseAccumulator)
  let prev = null;
  for (let lv = LEVELS - 1; lv >= 1; lv--) {
    const Lv = L.levels[lv], n = Lv.rows * Lv.cols;
    if (prev === null) f64(Lv.acc, S * n).fill(0);
    else X.upsample(prev.acc, prev.rows, prev.cols, Lv.acc, Lv.rows, Lv.cols, Lv.cm, Lv.cp, S);
    const [g0, g1, g2] = levelGrids(gs, lv);
    X.mixLevel(Lv.acc, n, S, G, pwa, g0, Math.max(g1, 0), Math.max(g2, 0), L.q[g0], g1 >= 0 ? L.q[g1] : 0,
      g2 >= 0 ? L.q[g2] : 0, step(lv, p.shift, p.ladder));
    prev = Lv;
  }
  const acc = prev.acc, ah = prev.rows, aw = prev.cols;
  const hid = f64(L.hid, S);
  hiddenConstants(S, G, wa, ba, hid);
  X.constCells(acc, ah * aw, S, pba, L.hid, L.m1, L.z1);
  const rgbC = rgbConstants(S, wb, bb, hid);
  f64(L.rgbC, 3).set(rgbC);
  const wa0 = f64(L.wa0, S);
  for (let s = 0; s < S; s++) wa0[s] = wa[s * G];
  const { pw, pn } = L;
  X.fullSize(acc, ah, aw, L.q[0], step(0, p.shift, p.ladder), L.wa0, pba, pwb, pbb, L.rgbC, width, height, S,
    L.vr, L.z1, L.rowZ, L.m1, L.rowM, L.hid, pw, pn, L.rgb, L.c0, L.cm, L.cp);
  if (!R) X.toPixels(L.rgb, pw, pn, L.out, width, height);
  else {
    X.erode(L.c0, L.c1, L.ctmp, width, height, pw);
    const { tC, outC } = residualConstants(R, rgbC, ka, kba, kb, kbb);
    f64(L.tC, R).set(tC);
    f64(L.outC, 3).set(outC);
    X.firstConv(L.rgb, L.t, L.c1, L.tC, pka, pkba, R, pw, pn, width, height, L.tr);
    X.erode(L.c1, L.c2, L.ctmp, width, height, pw);
    X.secondConv(L.rgb, L.t, L.c0, L.c2, L.outC, pkb, pkbb, R, pw, pn, width, height, L.tr, L.out);
  }
  if (!out) out = new Int32Array(3 * width * height);
  out.set(new Int32Array(buf, L.out, 3 * width * height));
  return out;
}

// ------------------------------------------------------------------ the decoder

// One field frame payload -> { rgb (Uint8Array, H x W x 3), latents, latentMs, synthMs }; gl: a
// FieldSynthGL (field-gl.js) for the WebGL2 synthesis (within +-1), else the exact JavaScript one
export function decodeFieldPayload(payload, width, height, tb, gl = null) {
  const t0 = performance.now();
  const p = parsePayload(payload, width, height);
  const latents = decodeLatents(p, tb);
  const t1 = performance.now();
  const rgb = gl ? gl.run(p, latents, width, height) : synthesize(p, latents, width, height);
  return { rgb, latents, latentMs: t1 - t0, synthMs: performance.now() - t1 };
}

// The player's decoder for field streams (images: one frame, an intra frame).
export class FieldDecoder {
  constructor(header, tables, gl = null) {
    if (header.codecId !== FIELD_CODEC_ID) throw new BitstreamError(`not a field stream (codec id ${header.codecId})`);
    this.header = header;
    this.tables = tables;
    this.gl = gl;
    this.reset();
  }
  reset() { this.state = null; this.lastFrame = null; }
  decode(packet) {
    const st = decodeFieldPayload(packet.payload, this.header.width, this.header.height, this.tables, this.gl);
    this.state = st;
    this.lastFrame = packet.frame;
    return st;
  }
}
