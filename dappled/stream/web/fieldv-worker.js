// The field video decoder in a Web Worker (module worker), so that a decode (tens to hundreds of
// milliseconds at 640x272 in JavaScript) never blocks the page's display ticks. Field images
// (codec id 5, one intra frame) are decoded here too, by field.js's FieldDecoder, alone. The page sends
// every FRAME packet as it arrives and asks for "decode from intra frame k up to frame n"
// (a generation number tags each such run: frames of an older run are ignored there); the worker
// posts each frame's RGB bytes in order, or the error that stopped it.
//
// With several cores (threads > 1, JavaScript synthesis) this worker is a sequencer over helper
// workers (fieldv-residual-worker.js, one per thread): a frame's latents and synthesis output
// need no earlier frame's pixels, so the helpers decode several frames at once; this worker then
// takes them in order, makes the prediction (motion compensation, integer) and adds it, clipped.
// Same pixels and the same errors, in the same order, as the one-thread decoder (fieldv.js
// applyFrame). With one thread, or the WebGL2 synthesis, it decodes frame after frame itself.
//
// page -> worker: { type: "init", header, synth, threads }   synth: "wasm" (the exact synthesis
//                                                             in WebAssembly, else in JavaScript), "js" or "gl"
//                 { type: "packet", frame, keyframe, payload }
//                 { type: "start", gen, from, limit }  reset, decode frames from..limit
//                 { type: "limit", gen, limit }        decode on up to frame limit
// worker -> page: { type: "ready", synth, note, threads }
//                 { type: "frame", gen, i, rgb, latentMs, synthMs, decodeMs, frameType }
//                 { type: "error", gen, i, name, message }

import { FieldSynthGL } from "./field-gl.js";
import { FIELD_CODEC_ID, FieldDecoder, addClip, loadDecoderWasm, loadTables, exactBackend } from "./field.js";
import { FieldVideoDecoder, frameHead, predict } from "./fieldv.js";

// loaded as soon as the worker starts (the player may start it before the stream's header is in)
const tablesReady = loadTables();
const wasmReady = loadDecoderWasm();
tablesReady.catch(() => {}); // (an error is reported at init)

const packets = [];
const types = []; // frame type of each packet's VHED (-1: unreadable), for the helpers' networks
let decoder = null, gen = 0, next = -1, limit = -1, queued = false;
let header = null, helpers = null, runFrom = -1, runState = null;
const jobs = new Map(); // frame -> { helper, result } of this generation

function schedule() {
  if (!queued) { queued = true; setTimeout(pump, 0); }
}

function fail(i, e) {
  postMessage({ type: "error", gen, i, name: e.name, message: e.message });
  next = -1;
}

function pump() {
  queued = false;
  if (helpers) { pumpPool(); return; }
  if (!decoder || next < 0 || next > limit || !packets[next]) return;
  const i = next;
  try {
    const t = performance.now();
    const r = decoder.decode(packets[i]);
    const decodeMs = performance.now() - t;
    // a copy: the decoder keeps its frame as the next one's reference
    const rgb = r.rgb.slice();
    postMessage({ type: "frame", gen, i, rgb, latentMs: r.latentMs, synthMs: r.synthMs, decodeMs, frameType: r.type }, [rgb.buffer]);
    next = i + 1;
  } catch (e) {
    fail(i, e);
    return;
  }
  schedule();
}

// ------------------------------------------------------------------ several threads

// the FLD chunk of the networks frame i (type 2) is coded under: the last type-1 frame of the run
// before it with no intra frame between (frames of types 2 and 3 may come between) (else null: the sequencer reports the missing networks)
function groupFld(i) {
  if (types[i] !== 2) return null;
  for (let j = i - 1; j >= runFrom; j--) {
    if (types[j] === 1) return frameHead(packets[j].payload).chunks.get("FLD ") || null;
    if ((types[j] !== 2 && types[j] !== 3 && types[j] !== 4) || packets[j].keyframe) return null; // 3, 4: no field
  }
  return null;
}

function pumpPool() {
  if (next < 0) return;
  // hand out the frames of the window to the helpers, at most two queued on each
  for (let f = next; f <= limit && packets[f]; f++) {
    if (jobs.has(f)) continue;
    let h = null;
    for (const c of helpers) if (c.load < 2 && (!h || c.load < h.load)) h = c;
    if (!h) break;
    h.load++;
    jobs.set(f, { helper: h, result: null, t0: performance.now() });
    h.worker.postMessage({ type: "job", gen, i: f, payload: packets[f].payload, groupFld: groupFld(f) });
  }
  // finish the frames whose helper is done, in order
  const { width, height } = header, first = next;
  while (next >= 0 && next <= limit && jobs.has(next) && jobs.get(next).result) {
    const i = next, job = jobs.get(i), r = job.result;
    jobs.delete(i);
    try {
      const t = performance.now();
      const p = packets[i];
      const state = p.keyframe ? null : runState;
      const head = frameHead(p.payload);
      const pred = predict(head, state, width, height);
      if (r.failed) throw Object.assign(new Error(r.message), { name: r.name });
      const frame = head.type === 3 ? pred.slice() : addClip(r.rounded, pred); // 3: the prediction alone
      runState = { frame, net: head.type === 0 ? null : head.type === 1 ? true : state.net };
      const rgb = frame.slice();
      const decodeMs = r.latentMs + r.synthMs + (performance.now() - t);
      postMessage({ type: "frame", gen, i, rgb, latentMs: r.latentMs, synthMs: r.synthMs, decodeMs, frameType: head.type }, [rgb.buffer]);
      next = i + 1;
    } catch (e) {
      fail(i, e);
      return;
    }
  }
  if (next > first) schedule(); // the window moved: more frames to hand out
}

function onHelper(h, m) {
  if (m.gen === -1) { fail(-1, m); return; } // its tables did not load
  h.load = Math.max(0, h.load - 1);
  if (m.gen !== gen) { schedule(); return; }
  const job = jobs.get(m.i);
  if (job) job.result = m.type === "done" ? m : { failed: true, name: m.name, message: m.message };
  schedule();
}

// ------------------------------------------------------------------ messages

self.onmessage = async (e) => {
  const m = e.data;
  if (m.type === "init") {
    try {
      header = m.header;
      const exact = m.synth === "js" ? "js" : "wasm";
      const [tables] = await Promise.all([tablesReady, wasmReady]);
      let note = null;
      if (exactBackend(exact) !== exact) note = "WebAssembly decoder unavailable: using the JavaScript one";
      let gl = null, synth = exactBackend();
      if (m.synth === "gl") {
        try {
          gl = new FieldSynthGL();
          synth = "gl";
        } catch (err) {
          note = `WebGL2 synthesis unavailable (${err.message}): using the exact one (${synth})`;
        }
      }
      const image = m.header.codecId === FIELD_CODEC_ID;
      decoder = image ? new FieldDecoder(m.header, tables, gl) : new FieldVideoDecoder(m.header, tables, gl);
      let threads = gl || image ? 1 : Math.max(1, Math.min(8, m.threads | 0));
      if (threads > 1 && typeof Worker === "undefined") threads = 1; // no workers inside workers
      if (threads > 1) {
        helpers = [];
        for (let k = 0; k < threads; k++) {
          const h = { worker: new Worker(new URL("./fieldv-residual-worker.js", import.meta.url), { type: "module" }), load: 0 };
          h.worker.onmessage = (ev) => onHelper(h, ev.data);
          h.worker.onerror = (ev) => { ev.preventDefault(); fail(-1, { name: "Error", message: `a decoder helper failed (${ev.message || "cannot load it"})` }); };
          h.worker.postMessage({ type: "size", width: m.header.width, height: m.header.height, synth });
          helpers.push(h);
        }
      }
      postMessage({ type: "ready", synth, note, threads });
      schedule();
    } catch (err) {
      postMessage({ type: "error", gen: -1, i: -1, name: err.name, message: err.message });
    }
  } else if (m.type === "packet") {
    packets[m.frame] = { frame: m.frame, keyframe: m.keyframe, payload: m.payload };
    try { types[m.frame] = frameHead(m.payload).type; } catch { types[m.frame] = -1; }
    schedule();
  } else if (m.type === "start") {
    gen = m.gen;
    next = m.from;
    runFrom = m.from;
    limit = m.limit;
    runState = null;
    jobs.clear();
    if (helpers) for (const h of helpers) { h.load = 0; h.worker.postMessage({ type: "gen", gen }); }
    if (decoder) decoder.reset();
    schedule();
  } else if (m.type === "limit") {
    if (m.gen === gen && m.limit > limit) limit = m.limit;
    schedule();
  }
};
