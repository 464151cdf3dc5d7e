// The field decoder's loops (dappled/stream/web/field.js: the latents' integer ARM and rANS, and
// the synthesis) compiled ahead of time to WebAssembly (AssemblyScript; built by `make web-wasm`
// into ../field-decoder.wasm, which ships). Why: in a fresh page the JavaScript loops run in the
// interpreter (every float boxed) until the engine has compiled them, which made the first frame
// of a stream take 3-5x its warm time; WebAssembly is compiled before it runs. The synthesis
// does the same float64 operations in the same order as field.js (IEEE double arithmetic, no
// fused multiply-add) and the latents the same integer arithmetic, so latents and pixels are
// bit-identical to field.js's and to Python's (tests/test_web_field.py holds them equal).
// field.js lays out the buffers in this module's memory and calls these functions; they
// allocate nothing.

const ACT_S: f64 = 4096.0; // 2 ** 12
const INV_ACT: f64 = 1.0 / 4096.0;
const ACT_LIMIT: f64 = 256.0;
const ACC_S: f64 = 16777216.0; // 2 ** 24
const INV_ACC: f64 = 1.0 / 16777216.0;
const ACC_LIMIT: f64 = 1048576.0; // 2 ** 20

@inline function ldf(p: usize, i: i32): f64 { return load<f64>(p + (<usize>i << 3)); }
@inline function stf(p: usize, i: i32, v: f64): void { store<f64>(p + (<usize>i << 3), v); }
@inline function ldi(p: usize, i: i32): i32 { return load<i32>(p + (<usize>i << 2)); }
@inline function sti(p: usize, i: i32, v: i32): void { store<i32>(p + (<usize>i << 2), v); }
@inline function ldb(p: usize, i: i32): i32 { return <i32>load<u8>(p + <usize>i); }
@inline function stb(p: usize, i: i32, v: i32): void { store<u8>(p + <usize>i, <u8>v); }

// round v to a multiple of 1/s, clamped to [-lim, lim] (field.js rnd)
@inline function rnd(v: f64, s: f64, inv: f64, lim: f64): f64 {
  const r = floor(v * s + 0.5) * inv;
  return r > lim ? lim : r < -lim ? -lim : r;
}

// next (S planes of rows x cols) = 2x upsampling of prev (S planes of h x w): taps 3/4, 1/4 clamped
export function upsample(prev: usize, h: i32, w: i32, next: usize, rows: i32, cols: i32,
                         cm: usize, cp: usize, S: i32): void {
  const n = rows * cols;
  for (let s = 0; s < S; s++) {
    const xs = s * h * w, os = s * n;
    for (let i = 0; i < rows; i++) {
      const k = i >> 1;
      const rm = min(k, h - 1), rp = (i & 1) == 0 ? max(k - 1, 0) : min(k + 1, h - 1);
      const a = xs + rm * w, b = xs + rp * w, o = os + i * cols;
      for (let j = 0; j < cols; j++) {
        const c0 = ldi(cm, j), c1 = ldi(cp, j);
        const u = ldf(prev, a + c0) * 0.75 + ldf(prev, b + c0) * 0.25;
        const v = ldf(prev, a + c1) * 0.75 + ldf(prev, b + c1) * 0.25;
        stf(next, o + j, u * 0.75 + v * 0.25);
      }
    }
  }
}

// next += the mix of a level's (one to three) latent grids (q1, q2: 0 where absent), then every
// value rounded to 2**-24 and clamped
export function mixLevel(next: usize, n: i32, S: i32, G: i32, wa: usize, g0: i32, g1: i32, g2: i32,
                         q0: usize, q1: usize, q2: usize, st: f64): void {
  for (let i = 0; i < n; i++) {
    const a = ldi(q0, i), b = q1 ? ldi(q1, i) : 0, c = q2 ? ldi(q2, i) : 0;
    if (a == 0 && b == 0 && c == 0) continue;
    for (let s = 0; s < S; s++) {
      const wr = s * G;
      let z = ldf(wa, wr + g0) * (<f64>a * st);
      if (q1) z += ldf(wa, wr + g1) * (<f64>b * st);
      if (q2) z += ldf(wa, wr + g2) * (<f64>c * st);
      stf(next, s * n + i, ldf(next, s * n + i) + z);
    }
  }
  for (let i = 0, m = S * n; i < m; i++) stf(next, i, rnd(ldf(next, i), ACC_S, INV_ACC, ACC_LIMIT));
}

// field.js constCells: z1 / m1 of the level-1 cells whose hidden values are the constants hid
export function constCells(acc: usize, plane: i32, S: i32, ba: usize, hid: usize, m1: usize, z1: usize): void {
  const full = S < 31 ? (1 << S) - 1 : 0x7fffffff;
  for (let j = 0; j < plane; j++) {
    let m = 0, high = 1;
    for (let s = 0; s < S; s++) {
      const v = floor((ldf(acc, s * plane + j) + ldf(ba, s)) * ACT_S + 0.5) * INV_ACT;
      if ((v > ACT_LIMIT ? ACT_LIMIT : v > 0 ? v : 0) == ldf(hid, s)) { if (s < 31) m |= 1 << s; } else if (s >= 31) high = 0;
    }
    sti(m1, j, m);
    stb(z1, j, m == full && high ? 1 : 0);
  }
}

// field.js fullSize: up2(acc_1) + the level-0 mix, the ReLU layer and the RGB layer, pixel by
// pixel; rgb (3 zero-bordered planes of pn) and c0 (1: the pixel's RGB is the constants rgbC)
export function fullSize(acc: usize, ah: i32, aw: i32, q0: usize, st0: f64, wa0: usize, ba: usize,
                         wb: usize, bb: usize, rgbC: usize, width: i32, height: i32, S: i32,
                         vr: usize, z1: usize, rowZ: usize, m1: usize, rowM: usize, hid: usize,
                         pw: i32, pn: i32, rgb: usize, c0: usize, cm: usize, cp: usize): void {
  const plane = ah * aw;
  const wb1 = wb + (<usize>S << 3), wb2 = wb + (<usize>(2 * S) << 3);
  const rc0 = ldf(rgbC, 0), rc1 = ldf(rgbC, 1), rc2 = ldf(rgbC, 2);
  const bb0 = ldf(bb, 0), bb1 = ldf(bb, 1), bb2 = ldf(bb, 2);
  for (let y = 0; y < height; y++) {
    const k = y >> 1;
    const ym = min(k, ah - 1), yp = (y & 1) == 0 ? max(k - 1, 0) : min(k + 1, ah - 1);
    const zm = ym * aw, zp = yp * aw;
    for (let j = 0; j < aw; j++) {
      stb(rowZ, j, ldb(z1, zm + j) & ldb(z1, zp + j));
      sti(rowM, j, ldi(m1, zm + j) & ldi(m1, zp + j));
    }
    for (let s = 0; s < S; s++) {
      const r1 = s * plane + zm, r2 = s * plane + zp, o = s * aw;
      for (let j = 0; j < aw; j++) stf(vr, o + j, ldf(acc, r1 + j) * 0.75 + ldf(acc, r2 + j) * 0.25);
    }
    const qrow = y * width, prow = (y + 1) * pw + 1;
    for (let x = 0; x < width; x++) {
      const q = ldi(q0, qrow + x), xm = ldi(cm, x), xp = ldi(cp, x), o = prow + x;
      if (q == 0 && (ldb(rowZ, xm) & ldb(rowZ, xp))) {
        stf(rgb, o, rc0); stf(rgb, pn + o, rc1); stf(rgb, 2 * pn + o, rc2); stb(c0, o, 1);
        continue;
      }
      stb(c0, o, 0);
      const qv = <f64>q * st0;
      const mask = q == 0 ? ldi(rowM, xm) & ldi(rowM, xp) : 0;
      let t0 = bb0, t1 = bb1, t2 = bb2;
      for (let s = 0; s < S; s++) {
        if (s < 31 && ((mask >> s) & 1)) {
          const hv = ldf(hid, s);
          t0 += ldf(wb, s) * hv; t1 += ldf(wb1, s) * hv; t2 += ldf(wb2, s) * hv;
          continue;
        }
        const vo = s * aw;
        let v = ldf(vr, vo + xm) * 0.75 + ldf(vr, vo + xp) * 0.25;
        if (q != 0) v += ldf(wa0, s) * qv;
        v = floor(v * ACC_S + 0.5) * INV_ACC;
        v = v > ACC_LIMIT ? ACC_LIMIT : v < -ACC_LIMIT ? -ACC_LIMIT : v;
        v = floor((v + ldf(ba, s)) * ACT_S + 0.5) * INV_ACT;
        const hv = v > ACT_LIMIT ? ACT_LIMIT : v > 0 ? v : 0;
        t0 += ldf(wb, s) * hv; t1 += ldf(wb1, s) * hv; t2 += ldf(wb2, s) * hv;
      }
      const r0 = rnd(t0, ACT_S, INV_ACT, ACT_LIMIT), r1 = rnd(t1, ACT_S, INV_ACT, ACT_LIMIT);
      const r2 = rnd(t2, ACT_S, INV_ACT, ACT_LIMIT);
      stf(rgb, o, r0); stf(rgb, pn + o, r1); stf(rgb, 2 * pn + o, r2);
      if (r0 == rc0 && r1 == rc1 && r2 == rc2) stb(c0, o, 1);
    }
  }
}

// round(255 v) of the RGB planes into out, (H, W, 3) order
export function toPixels(rgb: usize, pw: i32, pn: i32, out: usize, width: i32, height: i32): void {
  for (let y = 0; y < height; y++) {
    const prow = (y + 1) * pw + 1;
    for (let x = 0, i = 3 * y * width; x < width; x++, i += 3) {
      const o = prow + x;
      sti(out, i, <i32>floor(ldf(rgb, o) * 255 + 0.5));
      sti(out, i + 1, <i32>floor(ldf(rgb, pn + o) * 255 + 0.5));
      sti(out, i + 2, <i32>floor(ldf(rgb, 2 * pn + o) * 255 + 0.5));
    }
  }
}

// dst = 3x3 erosion of src (zero-bordered masks of the padded size)
export function erode(src: usize, dst: usize, tmp: usize, w: i32, h: i32, pw: i32): void {
  for (let y = 1; y <= h; y++) {
    const r = y * pw;
    for (let x = 1; x <= w; x++) stb(tmp, r + x, ldb(src, r + x - 1) & ldb(src, r + x) & ldb(src, r + x + 1));
  }
  for (let y = 1; y <= h; y++) {
    const r = y * pw;
    for (let x = 1; x <= w; x++) stb(dst, r + x, ldb(tmp, r - pw + x) & ldb(tmp, r + x) & ldb(tmp, r + pw + x));
  }
}

// 3x3 convolution sums b + sum k x at padded positions i0 .. i1 - 1 into tr, in field.js's order
@inline function convSpan(x: usize, C: i32, pn: i32, pw: i32, k: usize, ko: i32, b: f64, i0: i32, i1: i32, tr: usize): void {
  const n = i1 - i0;
  for (let j = 0; j < n; j++) stf(tr, j, b);
  for (let ci = 0; ci < C; ci++) {
    for (let dy = 0; dy < 3; dy++) {
      const kk = ko + ci * 9 + dy * 3, k0 = ldf(k, kk), k1 = ldf(k, kk + 1), k2 = ldf(k, kk + 2);
      const r = ci * pn + i0 + (dy - 1) * pw;
      for (let j = 0; j < n; j++) {
        stf(tr, j, ldf(tr, j) + (k0 * ldf(x, r + j - 1) + k1 * ldf(x, r + j) + k2 * ldf(x, r + j + 1)));
      }
    }
  }
}

// t = relu(round(conv(rgb))): the constants tC where c1, computed over the runs of other pixels
export function firstConv(rgb: usize, t: usize, c1: usize, tC: usize, ka: usize, kba: usize, R: i32,
                          pw: i32, pn: i32, width: i32, height: i32, tr: usize): void {
  for (let y = 1; y <= height; y++) {
    for (let i = y * pw + 1, e = i + width; i < e;) {
      if (ldb(c1, i)) { for (let o = 0; o < R; o++) stf(t, o * pn + i, ldf(tC, o)); i++; continue; }
      let i1 = i + 1;
      while (i1 < e && !ldb(c1, i1)) i1++;
      for (let o = 0; o < R; o++) {
        convSpan(rgb, 3, pn, pw, ka, o * 27, ldf(kba, o), i, i1, tr);
        for (let j = 0, to = o * pn + i; j < i1 - i; j++) {
          const v = floor(ldf(tr, j) * ACT_S + 0.5) * INV_ACT;
          stf(t, to + j, v > ACT_LIMIT ? ACT_LIMIT : v > 0 ? v : 0);
        }
      }
      for (let j = i; j < i1; j++) {
        let same = 1;
        for (let o = 0; o < R; o++) if (ldf(t, o * pn + j) != ldf(tC, o)) { same = 0; break; }
        stb(c1, j, same);
      }
      i = i1;
    }
  }
}

// out = round(255 round(rgb + round(conv(t)))): the constants outC where c2 and c0
export function secondConv(rgb: usize, t: usize, c0: usize, c2: usize, outC: usize, kb: usize, kbb: usize,
                           R: i32, pw: i32, pn: i32, width: i32, height: i32, tr: usize, out: usize): void {
  const oc0 = <i32>ldf(outC, 0), oc1 = <i32>ldf(outC, 1), oc2 = <i32>ldf(outC, 2), k9 = 9 * R;
  for (let y = 1; y <= height; y++) {
    const r0 = y * pw + 1, e = r0 + width, jr = 3 * (y - 1) * width - 3 * r0;
    for (let i = r0; i < e;) {
      if (ldb(c2, i) & ldb(c0, i)) {
        const j = jr + 3 * i;
        sti(out, j, oc0); sti(out, j + 1, oc1); sti(out, j + 2, oc2);
        i++;
        continue;
      }
      let i1 = i + 1;
      while (i1 < e && !(ldb(c2, i1) & ldb(c0, i1))) i1++;
      for (let c = 0; c < 3; c++) {
        convSpan(t, R, pn, pw, kb, c * k9, ldf(kbb, c), i, i1, tr);
        for (let j = 0, ro = c * pn + i; j < i1 - i; j++) {
          let v = floor(ldf(tr, j) * ACT_S + 0.5) * INV_ACT;
          v = v > ACT_LIMIT ? ACT_LIMIT : v < -ACT_LIMIT ? -ACT_LIMIT : v;
          v = floor((ldf(rgb, ro + j) + v) * ACT_S + 0.5) * INV_ACT;
          v = v > ACT_LIMIT ? ACT_LIMIT : v < -ACT_LIMIT ? -ACT_LIMIT : v;
          sti(out, jr + 3 * (i + j) + c, <i32>floor(v * 255 + 0.5));
        }
      }
      i = i1;
    }
  }
}

// ------------------------------------------------------------------ latents: integer ARM + rANS
//
// field.js decodeGrid / armPredict / tableOf with 64-bit integers: the ARM's values are integers
// below 2**53 there (held exactly in doubles), exact here in i64; the rANS state is one u64
// (CompressAI Rans64, 16-bit precision, 32-bit words).

const PAD = 3;
const BIG = 1 << 30;
const QMAX = 4095;
const ACT_CLAMP: i64 = 1 << 30;
const LS_MIN_FP: i64 = -1001;
const LS_SPAN: i64 = 1065 + 1001;
const SCALE_LEVELS: i64 = 64;

// the ARM (its integer weights, k steps) and its scratch, set by armSet
let cN = 0, hN = 0, two = 0, k1 = 0, k2 = 0, ko = 0;
let W1: usize = 0, B1: usize = 0, W2: usize = 0, B2: usize = 0, WO: usize = 0, BO: usize = 0;
let A1: usize = 0, A2: usize = 0, CTX: usize = 0;
// the ARM's output: mu, log scale; the table and centre of that output
let out0: i64 = 0, out1: i64 = 0, tid = 0, centre = 0;
// the Laplace tables: cdf (i32), start, nsym, lo (i32 each)
let CDF: usize = 0, START: usize = 0, NSYM: usize = 0, TLO: usize = 0;

@inline function ld64(p: usize, i: i32): i64 { return load<i64>(p + (<usize>i << 3)); }
@inline function st64(p: usize, i: i32, v: i64): void { store<i64>(p + (<usize>i << 3), v); }
@inline function rshift(v: i64, k: i32): i64 { return k == 0 ? v : (v + (<i64>1 << (k - 1))) >> k; }
@inline function clampAct(v: i64): i64 { return v > ACT_CLAMP ? ACT_CLAMP : v < -ACT_CLAMP ? -ACT_CLAMP : v; }
@inline function floorDiv(a: i64, b: i64): i64 { return a >= 0 ? a / b : -((-a + b - 1) / b); }

export function tablesSet(cdf: usize, start: usize, nsym: usize, lo: usize): void {
  CDF = cdf; START = start; NSYM = nsym; TLO = lo;
}

// weights as i32 (W1 h x c, B1 h, W2 h x h, B2 h, WO 2 x (h + c), BO G x 2); scratch a1, a2
// (i64, h each) and ctx (i64, c)
export function armSet(c: i32, h: i32, twoLayers: i32, kk1: i32, kk2: i32, kko: i32, w1: usize, b1: usize,
                       w2: usize, b2: usize, wo: usize, bo: usize, a1: usize, a2: usize, ctx: usize): void {
  cN = c; hN = h; two = twoLayers; k1 = kk1; k2 = kk2; ko = kko;
  W1 = w1; B1 = b1; W2 = w2; B2 = b2; WO = wo; BO = bo; A1 = a1; A2 = a2; CTX = ctx;
}

// the ARM's (mu, log scale) of grid g for the context CTX
function armPredict(g: i32): void {
  const c = cN, h = hN;
  for (let j = 0; j < h; j++) {
    let acc = <i64>ldi(B1, j);
    for (let i = 0; i < c; i++) acc += <i64>ldi(W1, j * c + i) * ld64(CTX, i);
    const v = clampAct(rshift(acc * 256, k1));
    st64(A1, j, v > 0 ? v : 0);
  }
  let last = A1;
  if (two) {
    for (let j = 0; j < h; j++) {
      let acc = <i64>ldi(B2, j) * 256;
      for (let i = 0; i < h; i++) acc += <i64>ldi(W2, j * h + i) * ld64(A1, i);
      const v = clampAct(rshift(acc, k2));
      st64(A2, j, v > 0 ? v : 0);
    }
    last = A2;
  }
  const m = h + c;
  let o0: i64 = 0, o1: i64 = 0, c0 = <i64>ldi(BO, 2 * g), c1 = <i64>ldi(BO, 2 * g + 1);
  for (let i = 0; i < h; i++) { const a = ld64(last, i); o0 += <i64>ldi(WO, i) * a; o1 += <i64>ldi(WO, m + i) * a; }
  for (let i = 0; i < c; i++) { const x = ld64(CTX, i); c0 += <i64>ldi(WO, h + i) * x; c1 += <i64>ldi(WO, m + h + i) * x; }
  out0 = clampAct(rshift(o0 + c0 * 256, ko));
  out1 = clampAct(rshift(o1 + c1 * 256, ko));
}

// the Laplace table of the ARM's output and its centre
function tableOf(): void {
  let si = floorDiv((out1 - LS_MIN_FP) * (SCALE_LEVELS - 1) + (LS_SPAN >> 1), LS_SPAN);
  si = si < 0 ? 0 : si > SCALE_LEVELS - 1 ? SCALE_LEVELS - 1 : si;
  const q16 = (out0 + 8) >> 4;
  tid = <i32>(si * 16 + (q16 & 15));
  centre = <i32>(q16 >> 4);
}

// the rANS decoder's state: x, the next word, the next escape value
let X: u64 = 0, PTR = 0, E = 0;

export function ransInit(w0: u32, w1: u32): void {
  X = (<u64>(w1 & 0x7fffffff) << 32) | <u64>w0;
  PTR = 2;
  E = 0;
}
export function escapesUsed(): i32 { return E; }

// One grid's latents into buf (padded: PAD zero columns either side, PAD zero rows above); rowLo,
// rowHi: per padded row, the first and last columns of its non-zero latents. words: the rANS words
// (u32, nw), excess: the escape values (i32, ne). 0, or 1: more escapes than escape values, 2: a
// latent out of range.
export function decodeGrid(g: i32, buf: usize, rowLo: usize, rowHi: usize, H: i32, Wd: i32, rel: usize,
                           words: usize, nw: i32, excess: usize, ne: i32): i32 {
  const c = cN, stride = Wd + 2 * PAD;
  for (let i = 0; i < c; i++) st64(CTX, i, 0);
  armPredict(g);
  tableOf();
  const t0 = tid, centre0 = centre;
  const first0 = ldi(START, t0), n0 = ldi(NSYM, t0);
  let lz = 0;
  for (let s = 1; s < n0; s++) {
    if (ldi(CDF, first0 + s + 1) - ldi(CDF, first0 + s) > ldi(CDF, first0 + lz + 1) - ldi(CDF, first0 + lz)) lz = s;
  }
  const csZ = ldi(CDF, first0 + lz), fZ = ldi(CDF, first0 + lz + 1) - csZ;
  const qZ = ldi(TLO, t0) + lz;
  const escZ = lz == n0 - 1;
  let x = X, ptr = PTR, e = E;
  for (let y = 0; y < H; y++) {
    const aLo = min(min(ldi(rowLo, y), ldi(rowLo, y + 1)), ldi(rowLo, y + 2)) - PAD;
    const aHi = max(max(ldi(rowHi, y), ldi(rowHi, y + 1)), ldi(rowHi, y + 2)) + PAD;
    let lastNz = -PAD - 1, lo = BIG, hi = -BIG;
    let at = (PAD + y) * stride + PAD;
    for (let xx = 0; xx < Wd; xx++, at++) {
      let t = t0, cen = centre0;
      if ((xx >= aLo && xx <= aHi) || xx - lastNz <= PAD) {
        let nz = false;
        for (let i = 0; i < c; i++) {
          const v = ldi(buf, at + ldi(rel, i));
          st64(CTX, i, <i64>v);
          if (v != 0) nz = true;
        }
        if (nz) {
          armPredict(g);
          tableOf();
          t = tid;
          cen = centre;
        }
      }
      const cf = <i32>(x & 0xffff);
      let l: i32, cs: i32, freq: i32;
      if (t == t0 && cf - csZ >= 0 && cf - csZ < fZ) {
        l = lz; cs = csZ; freq = fZ;
      } else {
        const first = ldi(START, t), n = ldi(NSYM, t);
        let r = n;
        l = 0;
        while (r - l > 1) { const mid = (l + r) >> 1; if (ldi(CDF, first + mid) <= cf) l = mid; else r = mid; }
        cs = ldi(CDF, first + l); freq = ldi(CDF, first + l + 1) - cs;
      }
      x = <u64>freq * (x >> 16) + <u64>cf - <u64>cs;
      if (x < 0x80000000) { x = (x << 32) | <u64>(ptr < nw ? load<u32>(words + (<usize>ptr << 2)) : 0); ptr++; }
      let q: i32;
      if (t == t0 && l == lz && !escZ) {
        q = cen + qZ;
      } else if (l == ldi(NSYM, t) - 1) {
        if (e >= ne) { X = x; PTR = ptr; E = e; return 1; }
        const ex = ldi(excess, e++);
        q = cen + (ex > 0 ? ldi(TLO, t) + ldi(NSYM, t) - 2 + ex : ldi(TLO, t) + ex);
      } else {
        q = cen + ldi(TLO, t) + l;
      }
      if (q > QMAX || q < -QMAX) { X = x; PTR = ptr; E = e; return 2; }
      sti(buf, at, q);
      if (q != 0) { lastNz = xx; if (xx < lo) lo = xx; hi = xx; }
    }
    sti(rowLo, y + PAD, lo);
    sti(rowHi, y + PAD, hi);
  }
  X = x; PTR = ptr; E = e;
  return 0;
}
