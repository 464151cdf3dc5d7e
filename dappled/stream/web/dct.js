// The transform residual of field video payload version 6: a port of
// dappled/codec/residual_dct.py's decode (8x8 integer DCT blocks of YCoCg-R, levels coded with
// adaptive binary contexts). Exact integer arithmetic, so the pixels are Python's bit for bit
// (every intermediate is an integer below 2**53; the shifts of large values are floor divisions).

import { BinaryDecoder, BitstreamError } from "./dpl.js";

const M8 = [
  [64, 64, 64, 64, 64, 64, 64, 64],
  [89, 75, 50, 18, -18, -50, -75, -89],
  [83, 36, -36, -83, -83, -36, 36, 83],
  [75, -18, -89, -50, 50, 89, 18, -75],
  [64, -64, -64, 64, 64, -64, -64, 64],
  [50, -89, 18, 75, -75, -18, 89, -50],
  [36, -83, 83, -36, -36, 83, -83, 36],
  [18, -50, 75, -89, 89, -75, 50, -18],
];
const LEVEL_SCALE = [40, 45, 51, 57, 64, 72];
const MAX_QP = 60, MAX_BITS = 13, REM_PREFIX = 7, NB = 15;
const ZIGZAG = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27,
  20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45,
  38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63];
const BAND = Array.from({ length: 64 }, (_, i) => (i < 8 ? i : 8 + ((i - 8) >> 3)));
const CBF = 0, SIG = 9, LAST = 9 + 3 * NB, GT1 = 9 + 6 * NB, REM = 9 + 6 * NB + 15;
const N_CONTEXTS = REM + 3 * (1 + REM_PREFIX);

function decodeUnsigned(d, ctx) {
  if (!d.bit(ctx)) return 0;
  let n = 1;
  while (n < MAX_BITS && d.bit(ctx + Math.min(n, REM_PREFIX))) n++;
  return 2 ** (n - 1) + d.bits(n - 1);
}

// residual_dct.inverse_blocks for one block (natural order levels, 64) into out (64)
function inverseBlock(lv, qp, t, out) {
  const scale = LEVEL_SCALE[qp % 6] * 2 ** Math.floor(qp / 6);
  for (let k = 0; k < 8; k++) { // t = (M^T d + 64) >> 7
    for (let j = 0; j < 8; j++) {
      let s = 0;
      for (let i = 0; i < 8; i++) s += M8[i][k] * lv[8 * i + j] * scale;
      t[8 * k + j] = Math.floor((s + 64) / 128);
    }
  }
  for (let k = 0; k < 8; k++) { // out = (t M + 8192) >> 14
    for (let j = 0; j < 8; j++) {
      let s = 0;
      for (let i = 0; i < 8; i++) s += t[8 * k + i] * M8[i][j];
      out[8 * k + j] = Math.floor((s + 8192) / 16384);
    }
  }
}

// residual_dct.decode without the prediction: the residual (height x width x 3, R G B
// interleaved, Int32Array) that the frame adds to its prediction before the clip
export function decodeDctResidual(data, width, height) {
  if (data.length < 3) throw new BitstreamError("transform residual too short");
  const qps = [data[0], data[1], data[2]];
  if (Math.max(...qps) > MAX_QP) throw new BitstreamError("transform residual qp out of range");
  const rows = Math.ceil(height / 8), cols = Math.ceil(width / 8);
  const d = new BinaryDecoder(data.subarray(3), N_CONTEXTS);
  const levels = new Int32Array(3 * rows * cols * 64); // [ch][r][c][zigzag position]
  const coded = new Uint8Array(3 * rows * cols);
  const pos = new Int32Array(64);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      for (let ch = 0; ch < 3; ch++) {
        const b = (ch * rows + r) * cols + c;
        const around = (c ? coded[b - 1] : 0) + (r ? coded[b - cols] : 0);
        if (!d.bit(CBF + 3 * ch + around)) continue;
        coded[b] = 1;
        let n = 0, i = 0;
        for (; i < 63; i++) {
          if (d.bit(SIG + NB * ch + BAND[i])) {
            pos[n++] = i;
            if (d.bit(LAST + NB * ch + BAND[i])) break;
          }
        }
        if (i === 63) pos[n++] = 63;
        let ones = 0, greater = 0;
        for (let k = 0; k < n; k++) {
          let a;
          if (d.bit(GT1 + 5 * ch + (greater ? 4 : Math.min(ones, 3)))) {
            greater++;
            a = 2 + decodeUnsigned(d, REM + (1 + REM_PREFIX) * ch);
          } else {
            a = 1;
            ones++;
          }
          levels[64 * b + pos[k]] = d.bits(1) ? -a : a;
        }
      }
    }
  }
  d.finish("transform residual");
  const pw = cols * 8;
  const planes = [0, 1, 2].map(() => new Float64Array(rows * 8 * pw));
  const nat = new Float64Array(64), t = new Float64Array(64), blk = new Float64Array(64);
  for (let ch = 0; ch < 3; ch++) {
    const plane = planes[ch];
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const b = (ch * rows + r) * cols + c;
        if (!coded[b]) continue;
        for (let i = 0; i < 64; i++) nat[ZIGZAG[i]] = levels[64 * b + i];
        inverseBlock(nat, qps[ch], t, blk);
        for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) plane[(8 * r + y) * pw + 8 * c + x] = blk[8 * y + x];
      }
    }
  }
  const out = new Int32Array(width * height * 3);
  const [py, pco, pcg] = planes;
  for (let y = 0, o = 0; y < height; y++) {
    for (let x = 0; x < width; x++, o += 3) {
      const k = y * pw + x;
      const tt = py[k] - Math.floor(pcg[k] / 2); // YCoCg-R lifting, inverted (floor halves, as >> 1)
      const g = pcg[k] + tt, bb = tt - Math.floor(pco[k] / 2);
      out[o] = bb + pco[k];
      out[o + 1] = g;
      out[o + 2] = bb;
    }
  }
  return out;
}
