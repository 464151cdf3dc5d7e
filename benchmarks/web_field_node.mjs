// The browser's field decoder (dappled/stream/web/field.js) timed in node, outside any page: the
// first (intra) frame of a field image or field video stream, decoded REPEAT times (latents:
// ARM + rANS; synthesis), cold and warm, optionally after WARMN decodes of another stream (WARM)
// to see what a JIT warm-up buys. The pixels' hash shows that every run decodes the same.
//
//   node benchmarks/web_field_node.mjs STREAM.dpl [REPEAT]
//   SYNTH=js node benchmarks/web_field_node.mjs STREAM.dpl   (the JavaScript loops; default:
//                                                             field-decoder.wasm, its load timed)
//   WARM=small.dpl WARMN=10 node benchmarks/web_field_node.mjs STREAM.dpl 3
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";

const web = new URL("../dappled/stream/web/", import.meta.url);
const { StreamParser, PACKET } = await import(new URL("dpl.js", web));
const F = await import(new URL("field.js", web));
const V = await import(new URL("fieldv.js", web));
const tb = F.parseTables(gunzipSync(readFileSync(new URL("field-tables.bin.gz", web))).buffer);
let wasmMs = null;
if (process.env.SYNTH !== "js") {
  const t = performance.now();
  if (!(await F.loadDecoderWasm(readFileSync(new URL("field-decoder.wasm", web))))) throw new Error("field-decoder.wasm did not load");
  wasmMs = performance.now() - t;
}

// the first frame's field payload, and the frame size
function firstPayload(path) {
  const sp = new StreamParser();
  sp.push(readFileSync(path));
  let p;
  while ((p = sp.next()) !== null) if (p.type === PACKET.FRAME) break;
  if (!p) throw new Error(`${path}: no frame`);
  let payload = p.payload;
  if (sp.header.codecId === V.FIELDV_CODEC_ID) payload = V.frameHead(payload).chunks.get("FLD ");
  return { payload, width: sp.header.width, height: sp.header.height };
}

if (process.env.WARM) {
  const t = performance.now();
  const w = firstPayload(process.env.WARM);
  for (let k = 0; k < Number(process.env.WARMN || 5); k++) F.decodeFieldPayload(w.payload, w.width, w.height, tb);
  console.log(`warm-up: ${(performance.now() - t).toFixed(1)} ms`);
}
const { payload, width, height } = firstPayload(process.argv[2]);
const reps = Number(process.argv[3] || 10);
const lat = [], syn = [];
let out;
for (let r = 0; r < reps; r++) {
  const d = F.decodeFieldPayload(payload, width, height, tb);
  lat.push(d.latentMs); syn.push(d.synthMs); out = d.rgb;
}
let h = 0;
for (let i = 0; i < out.length; i++) h = (h * 31 + out[i]) >>> 0;
const med = (a) => a.slice().sort((x, y) => x - y)[a.length >> 1];
console.log(JSON.stringify({ synth: F.exactBackend(), wasm_load_ms: wasmMs, width, height, first_ms: [lat[0], syn[0]], median_latents_ms: med(lat),
  median_synth_ms: med(syn), hash: h }));
