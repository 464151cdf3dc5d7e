// The field video decoder in a Web Worker (module worker), so that a decode (hundreds of
// milliseconds at 640x272 in JavaScript) never blocks the page's display ticks. The page sends
// every FRAME packet as it arrives and asks for "decode from intra frame k up to frame n"
// (a generation number tags each such run: frames of an older run are ignored there); the worker
// decodes in order, a frame per task (so a new request is seen between frames), and posts each
// frame's RGB bytes, or the error that stopped it.
//
// page -> worker: { type: "init", header, synth }    synth: "js" or "gl"
//                 { type: "packet", frame, keyframe, payload }
//                 { type: "start", gen, from, limit }  reset, decode frames from..limit
//                 { type: "limit", gen, limit }        decode on up to frame limit
// worker -> page: { type: "ready", synth, note }
//                 { type: "frame", gen, i, rgb, latentMs, synthMs, decodeMs, frameType }
//                 { type: "error", gen, i, name, message }

import { FieldSynthGL } from "./field-gl.js";
import { loadTables } from "./field.js";
import { FieldVideoDecoder } from "./fieldv.js";

const packets = [];
let decoder = null, gen = 0, next = -1, limit = -1, queued = false;

function schedule() {
  if (!queued) { queued = true; setTimeout(pump, 0); }
}

function pump() {
  queued = false;
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
    postMessage({ type: "error", gen, i, name: e.name, message: e.message });
    next = -1;
    return;
  }
  schedule();
}

self.onmessage = async (e) => {
  const m = e.data;
  if (m.type === "init") {
    try {
      const tables = await loadTables();
      let gl = null, note = null, synth = "js";
      if (m.synth === "gl") {
        try {
          gl = new FieldSynthGL();
          synth = "gl";
        } catch (err) {
          note = `WebGL2 synthesis unavailable (${err.message}): using the JavaScript one`;
        }
      }
      decoder = new FieldVideoDecoder(m.header, tables, gl);
      postMessage({ type: "ready", synth, note });
      schedule();
    } catch (err) {
      postMessage({ type: "error", gen: -1, i: -1, name: err.name, message: err.message });
    }
  } else if (m.type === "packet") {
    packets[m.frame] = { frame: m.frame, keyframe: m.keyframe, payload: m.payload };
    schedule();
  } else if (m.type === "start") {
    gen = m.gen;
    next = m.from;
    limit = m.limit;
    if (decoder) decoder.reset();
    schedule();
  } else if (m.type === "limit") {
    if (m.gen === gen && m.limit > limit) limit = m.limit;
    schedule();
  }
};
