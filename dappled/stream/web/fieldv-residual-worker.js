// One of the field video decoder's helper workers (started by fieldv-worker.js, one per core):
// the part of a frame that needs no earlier frame's pixels, i.e. its latents (integer ARM + rANS)
// and its synthesis output round(255 v), for the frames the sequencer hands out. The sequencer
// adds the motion-compensated prediction and clips, in frame order.
//
// in:  { type: "size", width, height, synth }        synth: the sequencer's ("wasm" or "js")
//      { type: "job", gen, i, payload, groupFld }  groupFld: the FLD chunk of the group's first
//                                                  predicted frame (its networks), for type 2
//      { type: "gen", gen }                        jobs of older generations are dropped
// out: { type: "done", gen, i, rounded, latentMs, synthMs } or { type: "failed", gen, i, name, message }

import { loadDecoderWasm, loadTables, parsePayload, exactBackend } from "./field.js";
import { frameHead, residualOf } from "./fieldv.js";

const queue = [];
let gen = 0, queued = false, width = 0, height = 0, tables = null;
// the tables, and the WebAssembly decoder loops unless the sequencer says "js" (its size message)
let synthAsked = null;
const wasmReady = loadDecoderWasm();
const tablesReady = loadTables().then((tb) => { tables = tb; });

function schedule() {
  if (!queued && tables && synthAsked) { queued = true; setTimeout(run, 0); }
}

function run() {
  queued = false;
  while (queue.length && queue[0].gen !== gen) queue.shift();
  const job = queue.shift();
  if (!job) return;
  try {
    const head = frameHead(job.payload);
    const net = job.groupFld ? parsePayload(job.groupFld, width, height) : null;
    const r = residualOf(head, net, width, height, tables);
    postMessage({ type: "done", gen: job.gen, i: job.i, rounded: r.rounded, latentMs: r.latentMs, synthMs: r.synthMs },
      [r.rounded.buffer]);
  } catch (e) {
    postMessage({ type: "failed", gen: job.gen, i: job.i, name: e.name, message: e.message });
  }
  schedule();
}

self.onmessage = (e) => {
  const m = e.data;
  if (m.type === "size") {
    width = m.width;
    height = m.height;
    wasmReady.then(() => { synthAsked = exactBackend(m.synth === "wasm" ? "wasm" : "js"); schedule(); });
  } else if (m.type === "job") {
    if (m.gen >= gen) { gen = m.gen; queue.push(m); }
    schedule();
  } else if (m.type === "gen") {
    gen = Math.max(gen, m.gen);
    schedule();
  }
};
tablesReady.then(schedule, (err) => postMessage({ type: "failed", gen: -1, i: -1, name: err.name, message: err.message }));
