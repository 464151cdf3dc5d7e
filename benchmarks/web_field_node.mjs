// The browser's field decoders (field.js, fieldv.js) run in Node, stage by stage: a quick profile
// of the JavaScript decode outside the browser (the same V8), and a check against the Python
// decoder's frames when a reference is given (raw RGB bytes, frame after frame).
//
//   PYTHONPATH=. .venv/bin/python -c "import sys, numpy as np; from dappled.codec.video import \
//       decode_video; np.stack(decode_video(open(sys.argv[1], 'rb').read())).tofile(sys.argv[2])" \
//       STREAM.dpl /tmp/ref.rgb
//   node --experimental-default-type=module benchmarks/web_field_node.mjs STREAM.dpl [/tmp/ref.rgb] [repeat]
//
// (add --cpu-prof before the script for a V8 profile). Prints ms per frame (latents, synthesis; wall clock), the process's CPU ms per frame (less
// sensitive to the machine's load)
// and the largest difference from the reference (0: bit-exact).

import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { PACKET, StreamParser } from "../dappled/stream/web/dpl.js";
import { FIELD_CODEC_ID, FieldDecoder, parseTables } from "../dappled/stream/web/field.js";
import { FieldVideoDecoder } from "../dappled/stream/web/fieldv.js";

const [stream, refPath, repeatArg] = process.argv.slice(2);
const web = new URL("../dappled/stream/web/", import.meta.url);
const tb = parseTables(gunzipSync(readFileSync(new URL("field-tables.bin.gz", web))));
const parser = new StreamParser();
parser.push(new Uint8Array(readFileSync(stream)));
const packets = [];
for (let p = parser.next(); p; p = parser.next()) if (p.type === PACKET.FRAME) packets.push(p);
const h = parser.header;
const ref = refPath && refPath !== "-" ? new Uint8Array(readFileSync(refPath)) : null;
const n = h.width * h.height * 3;
const repeat = Number(repeatArg || 1);
for (let r = 0; r < repeat; r++) {
  const dec = h.codecId === FIELD_CODEC_ID ? new FieldDecoder(h, tb) : new FieldVideoDecoder(h, tb);
  let maxDiff = 0, lat = 0, syn = 0, lat0 = 0, syn0 = 0, total = 0;
  const cpu0 = process.cpuUsage();
  for (const [i, p] of packets.entries()) {
    const t = performance.now();
    const st = dec.decode(p);
    total += performance.now() - t;
    if (i === 0) { lat0 = st.latentMs; syn0 = st.synthMs; } else { lat += st.latentMs; syn += st.synthMs; }
    if (ref) {
      const a = ref.subarray(i * n, (i + 1) * n);
      for (let k = 0; k < n; k++) { const d = Math.abs(a[k] - st.rgb[k]); if (d > maxDiff) maxDiff = d; }
    }
  }
  const cpu = process.cpuUsage(cpu0);
  const m = Math.max(1, packets.length - 1);
  console.log(JSON.stringify({
    size: `${h.width}x${h.height}`, frames: packets.length,
    first: { latentMs: +lat0.toFixed(1), synthMs: +syn0.toFixed(1) },
    rest: { latentMs: +(lat / m).toFixed(1), synthMs: +(syn / m).toFixed(1) },
    msPerFrame: +(total / packets.length).toFixed(1),
    cpuMsPerFrame: +((cpu.user + cpu.system) / 1000 / packets.length).toFixed(1), maxDiff: ref ? maxDiff : null,
  }));
}
