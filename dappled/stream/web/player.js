// The browser player: fetches a .dpl stream, parses packets as bytes arrive, decodes frames on
// the stream's clock and renders them with WebGL2. Same timing rules as `dappled play`: the
// clock starts at the first frame; a frame still downloading stalls the clock; a frame more than
// one period late is decoded but not drawn (dropped). window.dappled exposes the state.

import { BitstreamError, PACKET, SplatVideoDecoder, StreamParser, gaussianInstances } from "./dpl.js";
import { FIELD_CODEC_ID, FieldDecoder, loadDecoderWasm, loadTables, exactBackend } from "./field.js";
import { FieldSynthGL } from "./field-gl.js";
import { FIELDV_CODEC_ID, FieldVideoDecoder } from "./fieldv.js";
import { SplatRenderer } from "./gl.js";

// Field images are synthesized in exact float64 arithmetic (field.js; in WebAssembly, field-decoder.wasm,
// where the browser has it, ?synth=js: in JavaScript), in the decoder worker
// (fieldv-worker.js; ?worker=0: on the page), and shown on a 2D canvas: no WebGL needed. ?synth=gl asks for the WebGL2 synthesis (field-gl.js, within +-1 of exact);
// without WebGL2 or float render targets the page says so and the JavaScript one runs.
class CanvasRenderer {
  constructor(canvas, width, height) {
    canvas.width = width;
    canvas.height = height;
    this.ctx = canvas.getContext("2d");
    if (!this.ctx) throw new Error("this browser gives no 2D canvas");
    this.image = this.ctx.createImageData(width, height);
    this.rgb = null;
    this.format = "RGBA8 (2D canvas)";
  }
  warmUp() {}
  drawRGB(rgb) {
    const d = this.image.data;
    for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) { d[j] = rgb[i]; d[j + 1] = rgb[i + 1]; d[j + 2] = rgb[i + 2]; d[j + 3] = 255; }
    this.ctx.putImageData(this.image, 0, 0);
    this.rgb = rgb;
  }
  readRGB() { return this.rgb; }
}

// Field video frames decoded in a Web Worker (fieldv-worker.js): the page keeps the frames the
// worker has posted, by index, and tells it how far ahead to go. get(i) is the frame or null
// (then the worker is on its way to it: restarted from the intra frame at or before i when its
// current run will not reach i); frames are dropped from the page once shown.
const DECODE_AHEAD = 3; // frames the worker may decode beyond the one on screen

// A decoder worker started before the stream's header is known (WebPlayer's constructor), so that
// its module, tables and WebAssembly load while the stream downloads; taken by the first
// WorkerFrames, ended for a stream that needs none. Its load error waits for the taker.
function spawnDecoder() {
  const spare = { worker: new Worker(new URL("./fieldv-worker.js", import.meta.url), { type: "module" }), error: null };
  spare.worker.onerror = (e) => { e.preventDefault(); spare.error = e.message || "cannot load it"; };
  return spare;
}

class WorkerFrames {
  constructor(player, header, synth, spare = null) {
    this.player = player;
    this.ready = new Map();
    this.gen = 0;
    this.expect = -1; // the next frame the current run will post (-1: no run)
    this.limit = -1;
    this.waiters = [];
    this.loaded = false;
    this.worker = spare ? spare.worker : new Worker(new URL("./fieldv-worker.js", import.meta.url), { type: "module" });
    this.worker.onmessage = (e) => this.onMessage(e.data);
    this.worker.onerror = (e) => { e.preventDefault(); this.onMessage({ type: "error", gen: this.gen, i: -1, message: `the decoder worker failed (${e.message || "cannot load it"})` }); };
    if (spare && spare.error) this.onMessage({ type: "error", gen: this.gen, i: -1, message: `the decoder worker failed (${spare.error})` });
    const { width, height, codecId, frameCount, fpsNum, fpsDen } = header;
    // ?threads=N: helper workers decoding frames at once (1: none, the worker decodes alone);
    // default: one per core but one, left to the page and the compositor
    const asked = Number(params.get("threads"));
    const threads = asked >= 1 ? asked : Math.max(1, (navigator.hardwareConcurrency || 1) - 1);
    this.ahead = DECODE_AHEAD;
    this.worker.postMessage({ type: "init", header: { width, height, codecId, frameCount, fpsNum, fpsDen }, synth, threads });
  }
  send(p) { this.worker.postMessage({ type: "packet", frame: p.frame, keyframe: p.keyframe, payload: p.payload }); }
  onMessage(m) {
    const pl = this.player, s = pl.state;
    if (m.type === "ready") {
      this.loaded = true;
      s.decoderReadyMs = performance.now() - pl.t0;
      s.threads = m.threads;
      this.ahead = Math.max(DECODE_AHEAD, 2 * m.threads);
      s.synth = m.synth;
      if (m.note) { s.note = m.note; pl.ui.message.textContent = m.note; }
      return;
    }
    if (m.gen !== this.gen && m.gen !== -1) return; // from a run the page has given up
    if (m.type === "frame") {
      this.ready.set(m.i, { rgb: m.rgb, latentMs: m.latentMs, synthMs: m.synthMs });
      if (s.firstDecodeMs === null) { s.firstDecodeMs = m.decodeMs; s.firstReadyMs = performance.now() - pl.t0; }
      this.expect = m.i + 1;
      s.decoded++;
      s.decodeMs += m.decodeMs;
      if (s.decodeTimes.length < 1000) s.decodeTimes.push([m.i, m.frameType ?? 0, m.decodeMs, m.latentMs, m.synthMs]);
      s.latentMs = m.latentMs;
      s.synthMs = m.synthMs;
      s.latentMsSum += m.latentMs;
      s.synthMsSum += m.synthMs;
    } else if (m.type === "error") {
      const where = m.i >= 0 ? `at frame ${m.i}` : "before the first frame";
      this.error = `stream breaks ${where}: ${m.message}`;
      this.expect = -1;
      pl.fail(`${pl.src}: ${this.error}`);
      s.playing = false;
    }
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
  // the frame i if decoded, else null, with the worker set on its way to it
  get(i) {
    const st = this.ready.get(i);
    if (st) return st;
    if (this.error) throw new BitstreamError(this.error);
    let k = -1;
    for (const f of this.player.keyframes) if (f <= i) k = f;
    if (k < 0) throw new BitstreamError(`no intra frame at or before frame ${i}`);
    // restart when the current run has passed i, or an intra frame after its position is nearer
    if (this.expect < 0 || i < this.expect || k > this.expect) this.restart(k, i);
    else this.raise(i + this.ahead);
    return null;
  }
  restart(k, i) {
    this.gen++;
    this.ready.clear();
    this.expect = k;
    this.limit = i + this.ahead;
    this.worker.postMessage({ type: "start", gen: this.gen, from: k, limit: this.limit });
  }
  raise(limit) {
    if (limit <= this.limit) return;
    this.limit = limit;
    this.worker.postMessage({ type: "limit", gen: this.gen, limit });
  }
  // frame i is on screen: forget it and those before, let the worker go further
  done(i) {
    for (const k of this.ready.keys()) if (k <= i) this.ready.delete(k);
    this.raise(i + 1 + this.ahead);
  }
  reset() { this.ready.clear(); this.expect = -1; this.gen++; }
  // a promise of frame i (for captureFrame)
  async wait(i) {
    for (;;) {
      const st = this.get(i);
      if (st) return st;
      await new Promise((resolve) => this.waiters.push(resolve));
    }
  }
}

const FPS_WINDOW = 30; // frames the shown rate is measured over
const PREROLL_TICKS = 3; // display ticks the first frame stays up before the clock starts

class WebPlayer {
  constructor(src, canvas, ui) {
    this.src = src;
    this.canvas = canvas;
    this.ui = ui;
    this.frames = []; // FRAME packets by frame index, as they arrive
    this.keyframes = []; // indices of intra frames received
    this.instances = null;
    this.state = {
      src, width: 0, height: 0, frameCount: 0, fps: 0, bytes: 0, downloaded: false, playing: true,
      frame: -1, shown: 0, dropped: 0, decoded: 0, stalls: 0, decodeStalls: 0, worker: false, threads: 1, decoderReadyMs: null, firstDecodeMs: null, latentMsSum: 0, synthMsSum: 0, measuredFps: 0, ended: false, error: null,
      firstFrameMs: null, headerMs: null, firstReadyMs: null, renderFormat: null, latentMs: null, synthMs: null, synth: null, note: null, playFps: 0, droppedAt: [], decodeTimes: [], decodeMs: 0, drawMs: 0, ticks: 0, tickMs: 0,
    };
    this.t0 = performance.now();
    // field streams decode in a worker: started now, while the stream downloads
    this.spare = typeof Worker !== "undefined" && params.get("worker") !== "0" ? spawnDecoder() : null;
    this.next = 0;
    this.origin = null;
    this.base = 0;
    this.stalled = false;
    this.shownTimes = [];
  }

  // the worker started in the constructor (null once taken or ended)
  takeSpare() {
    const s = this.spare;
    this.spare = null;
    return s;
  }

  fail(msg) { // the first error stays on the page: later ones follow from it
    if (this.state.error) return;
    this.state.error = msg;
    this.ui.message.textContent = msg;
  }

  async load() {
    const parser = new StreamParser();
    let resp;
    try {
      resp = await fetch(this.src);
    } catch (e) {
      this.fail(`${this.src}: cannot fetch (${e.message})`);
      this.state.downloaded = true;
      return;
    }
    if (!resp.ok) {
      this.fail(`${this.src}: HTTP ${resp.status}`);
      this.state.downloaded = true;
      return;
    }
    const reader = resp.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        this.state.bytes += value.length;
        parser.push(value);
        let p;
        while ((p = parser.next()) !== null) this.onPacket(parser, p);
      }
      if (!parser.header) throw new BitstreamError(`stream too short for a header (${this.state.bytes} bytes)`);
      if (this.frames.length < this.state.frameCount || !parser.ended) {
        throw new BitstreamError(`stream ends after frame ${this.frames.length} of ${this.state.frameCount}`);
      }
    } catch (e) {
      const where = this.frames.length ? `after frame ${this.frames.length - 1}` : "before the first frame";
      this.fail(`${this.src}: stream breaks ${where}: ${e.message}`);
      reader.cancel().catch(() => {});
    } finally {
      this.state.downloaded = true;
    }
  }

  onPacket(parser, p) {
    if (!this.renderer) {
      try {
        this.start(parser.header);
      } finally { // a stream that decodes without the worker started for it (splat, ?synth=gl images)
        if (this.spare) { this.spare.worker.terminate(); this.spare = null; }
      }
    }
    if (p.type !== PACKET.FRAME) return;
    if (p.frame !== this.frames.length) throw new BitstreamError(`frame ${p.frame} where frame ${this.frames.length} was expected`);
    this.frames.push(p);
    if (p.keyframe) this.keyframes.push(p.frame);
    if (this.frameSource) this.frameSource.send(p);
  }

  start(header) {
    this.header = header;
    this.state.headerMs = performance.now() - this.t0;
    Object.assign(this.state, { width: header.width, height: header.height, frameCount: header.frameCount, fps: header.fps });
    if (header.codecId === FIELDV_CODEC_ID) {
      // field video: decoded in a worker (?worker=0: in the page, between display ticks)
      this.field = true;
      this.renderer = new CanvasRenderer(this.canvas, header.width, header.height);
      const synth = askedSynth();
      this.state.synth = synth;
      if (typeof Worker !== "undefined" && params.get("worker") !== "0") {
        this.frameSource = new WorkerFrames(this, header, synth, this.takeSpare());
        this.decoder = this.frameSource;
        this.state.worker = true;
      } else {
        let gl = null;
        if (synth === "gl") {
          try { gl = new FieldSynthGL(); } catch (e) {
            this.state.note = `WebGL2 synthesis unavailable (${e.message}): using the exact one`;
            this.ui.message.textContent = this.state.note;
          }
        }
        exactSynth(synth).then(([tb, exact, note]) => {
          if (!gl) this.state.synth = exact;
          if (note && !gl) { this.state.note = note; this.ui.message.textContent = note; }
          this.decoder = new FieldVideoDecoder(header, tb, gl);
          this.state.decoderReadyMs = performance.now() - this.t0;
        })
          .catch((e) => { this.fail(`${this.src}: ${e.message}`); this.state.playing = false; });
        this.state.worker = false;
      }
    } else if (header.codecId === FIELD_CODEC_ID && params.get("synth") !== "gl" && typeof Worker !== "undefined"
               && params.get("worker") !== "0") {
      // field image, exact synthesis: decoded in the worker too (the page stays live)
      this.field = true;
      this.renderer = new CanvasRenderer(this.canvas, header.width, header.height);
      this.state.synth = askedSynth();
      this.frameSource = new WorkerFrames(this, header, this.state.synth, this.takeSpare());
      this.decoder = this.frameSource;
      this.state.worker = true;
    } else if (header.codecId === FIELD_CODEC_ID) {
      this.field = true;
      this.renderer = new CanvasRenderer(this.canvas, header.width, header.height);
      let gl = null;
      if (params.get("synth") === "gl") {
        try {
          gl = new FieldSynthGL();
          this.state.synth = "gl";
        } catch (e) {
          this.state.note = `WebGL2 synthesis unavailable (${e.message}): using the exact one`;
          this.ui.message.textContent = this.state.note;
        }
      }
      exactSynth(askedSynth()).then(([tb, exact, note]) => {
        if (!gl) this.state.synth = exact;
        if (note && !gl) { this.state.note = note; this.ui.message.textContent = note; }
        this.decoder = new FieldDecoder(header, tb, gl);
      })
        .catch((e) => { this.fail(`${this.src}: ${e.message}`); this.state.playing = false; });
    } else {
      this.decoder = new SplatVideoDecoder(header);
      try {
        this.renderer = new SplatRenderer(this.canvas, header.width, header.height);
      } catch (e) { // no WebGL2 or no float render target: say so, never a blank canvas
        this.renderer = { failed: true };
        this.fail(`${this.src}: cannot show this stream in this browser: ${e.message}`);
        throw e;
      }
    }
    this.state.renderFormat = this.renderer.format;
    this.renderer.warmUp(); // shader compilation happens here, not on the clock
    const asked = Number(params.get("zoom"));
    const zoom = asked >= 1 && asked <= 8 ? asked : Math.max(1, Math.min(3, Math.floor(640 / header.width)));
    this.canvas.style.width = `${header.width * zoom}px`;
    this.canvas.style.height = `${header.height * zoom}px`;
    this.ui.seek.max = String(header.frameCount - 1);
    this.period = header.fps > 0 ? 1000 / header.fps : 40; // an image (fps 0): one frame
    requestAnimationFrame((t) => this.tick(t));
  }

  // decode frame i, from the intra frame before it when i does not follow the last one
  decodeFrame(i) {
    if (this.ahead && this.ahead.i === i) { const st = this.ahead.st; this.ahead = null; return st; }
    this.ahead = null;
    if (this.decoder.lastFrame === null || this.decoder.lastFrame !== i - 1) {
      let k = -1;
      for (const f of this.keyframes) if (f <= i) k = f;
      if (k < 0) throw new BitstreamError(`no intra frame at or before frame ${i}`);
      this.decoder.reset();
      for (let j = k; j < i; j++) this.decoder.decode(this.frames[j]);
    }
    const t = performance.now();
    const st = this.decoder.decode(this.frames[i]);
    const ms = performance.now() - t;
    this.state.decodeMs += ms;
    if (this.field && this.state.decodeTimes.length < 1000) this.state.decodeTimes.push([i, st.type ?? 0, ms, st.latentMs, st.synthMs]);
    if (this.state.firstDecodeMs === null) this.state.firstDecodeMs = performance.now() - t;
    if (this.field) {
      this.state.latentMs = st.latentMs; this.state.synthMs = st.synthMs;
      this.state.latentMsSum += st.latentMs; this.state.synthMsSum += st.synthMs;
    }
    this.state.decoded++;
    return st;
  }

  draw(st) {
    const t = performance.now();
    if (this.field) {
      this.renderer.drawRGB(st.rgb);
      this.state.drawMs += performance.now() - t;
      return;
    }
    const { data, count } = gaussianInstances(st, this.header.width, this.header.height, this.instances);
    this.instances = data;
    this.renderer.draw(data, count);
    this.state.drawMs += performance.now() - t;
  }

  tick(now) {
    if (this.lastTick !== undefined && this.state.playing) { this.state.ticks++; this.state.tickMs += now - this.lastTick; }
    this.lastTickBefore = this.lastTick;
    this.lastTick = now;
    try {
      this.step(now);
    } catch (e) {
      this.fail(`${this.src}: stream breaks after frame ${this.next - 1}: ${e.message}`);
      this.state.playing = false;
    }
    this.updateUi();
    requestAnimationFrame((t) => this.tick(t));
  }

  step(now) {
    const s = this.state;
    if (!s.playing || s.ended || !this.decoder) return; // field: until its tables are loaded
    for (;;) {
      const i = this.next;
      if (i >= s.frameCount || (s.downloaded && i >= this.frames.length)) {
        s.ended = true;
        s.playing = false;
        return;
      }
      if (this.origin === "pending") { // the first frame after a (re)start is on screen:
        if (++this.preroll < PREROLL_TICKS) return; // hold it a few display ticks (page settles)
        this.origin = now + this.period;
        this.base = i;
        this.clockFirst = null;
      }
      if (this.origin === null) { this.origin = now; this.base = i; this.restart = true; }
      let due = this.origin + (i - this.base) * this.period;
      if (i >= this.frames.length) { // still downloading: the clock waits for it
        if (now > due) this.stalled = true;
        return;
      }
      let st = null;
      if (this.frameSource) { // decoded in the worker: a frame not ready yet holds the clock
        st = this.frameSource.get(i);
        if (!st) { this.stalled = true; this.decodeWait = true; return; }
      }
      if (this.stalled) {
        if (now > due) {
          this.origin += now - due; due = now;
          if (!this.restart) { s.stalls++; if (this.decodeWait) s.decodeStalls++; } // not the first frame's wait
        }
        this.stalled = false;
        this.decodeWait = false;
      }
      if (now < due - 2) return; // rAF fires a little early at times
      if (st) this.frameSource.done(i);
      else st = this.decodeFrame(i);
      this.next = i + 1;
      const last = i + 1 >= s.frameCount || (s.downloaded && i + 1 >= this.frames.length);
      if (now > due + this.period && !last) { // too late: decoded (the next frames need it), not
        // drawn; the last frame there is is drawn anyway: playback ends on it
        s.dropped++;
        if (s.droppedAt.length < 100) s.droppedAt.push([i, Math.round(now - due), Math.round(now - this.lastTickBefore)]);
        continue;
      }
      this.draw(st);
      if (this.restart) { this.origin = "pending"; this.preroll = 0; this.restart = false; }
      s.frame = i;
      s.shown++;
      if (s.firstFrameMs === null) s.firstFrameMs = performance.now() - this.t0;
      if (this.origin !== "pending") { // rate on the running clock, over the whole play
        if (this.clockFirst === null) { this.clockFirst = now; this.clockShown = 0; }
        this.clockShown++;
        if (this.clockShown > 1) s.playFps = (1000 * (this.clockShown - 1)) / (now - this.clockFirst);
      }
      this.shownTimes.push(now);
      if (this.shownTimes.length > FPS_WINDOW) this.shownTimes.shift();
      const n = this.shownTimes.length;
      if (n > 1) s.measuredFps = (1000 * (n - 1)) / (this.shownTimes[n - 1] - this.shownTimes[0]);
      if (!this.frameSource && i + 1 < this.frames.length) this.ahead = { i: i + 1, st: this.decodeFrame(i + 1) }; // decode ahead
      return;
    }
  }

  // page text changes only when its value does: a relayout per tick costs frames in software
  updateUi() {
    const s = this.state;
    const set = (el, text) => { if (el.textContent !== text) el.textContent = text; };
    set(this.ui.counter, `frame ${s.frame + 1} / ${s.frameCount}`);
    const now = performance.now();
    if (!s.playing || !(now - (this.uiSlow || 0) < 250)) { // rates and totals: 4 times a second
      this.uiSlow = now;
      set(this.ui.fps, `${s.measuredFps.toFixed(1)} fps`);
      set(this.ui.stats, `shown ${s.shown}, dropped ${s.dropped}, stalls ${s.stalls}` + (s.decodeStalls ? ` (${s.decodeStalls} waiting for the decoder)` : "")
          + `, ${s.bytes} bytes` + (s.downloaded ? "" : " (loading)"));
    }
    const v = String(Math.max(0, s.frame));
    if (document.activeElement !== this.ui.seek && this.ui.seek.value !== v) this.ui.seek.value = v;
    set(this.ui.play, s.playing ? "pause" : "play");
  }

  togglePlay() {
    const s = this.state;
    if (s.playing) { s.playing = false; return; }
    if (s.ended) { s.ended = false; this.seek(0); }
    s.playing = true;
    this.origin = null;
    this.shownTimes = [];
  }

  // continue from the intra frame at or before `target` (among the frames received)
  seek(target) {
    if (!this.decoder) return;
    let k = 0;
    for (const f of this.keyframes) if (f <= target) k = f;
    this.next = k;
    this.origin = null;
    this.shownTimes = [];
    this.decoder.reset();
    this.ahead = null;
    this.state.ended = false;
  }

  // Decode and draw frame i now (pauses playback); RGB bytes, top row first, as base64.
  captureFrame(i) {
    this.state.playing = false;
    if (!(i >= 0 && i < this.frames.length)) throw new Error(`frame ${i} not received`);
    if (!this.decoder) throw new Error("the decoder is not ready");
    if (this.frameSource) { // decoded in the worker: a promise of the bytes
      return this.frameSource.wait(i).then((st) => { this.draw(st); this.state.frame = i; return this.encodeShown(); });
    }
    const st = this.decodeFrame(i);
    this.draw(st);
    this.state.frame = i;
    return this.encodeShown();
  }

  encodeShown() {
    const rgb = this.renderer.readRGB();
    let bin = "";
    for (let j = 0; j < rgb.length; j += 0x8000) bin += String.fromCharCode.apply(null, rgb.subarray(j, j + 0x8000));
    return btoa(bin);
  }
}

const params = new URLSearchParams(location.search);

// the field synthesis asked for (?synth=): "gl" (WebGL2, within +-1), "js" (exact, JavaScript),
// else "wasm" (exact, WebAssembly where the browser has it: the fastest from the first frame)
function askedSynth() {
  const s = params.get("synth");
  return s === "gl" || s === "js" ? s : "wasm";
}

// the tables, and the exact synthesis in use once "wasm" (if it loads) or "js" is set up
function exactSynth(asked) {
  const exact = asked === "js" ? "js" : "wasm";
  return Promise.all([loadTables(), exact === "wasm" ? loadDecoderWasm() : null]).then(([tb]) => {
    const got = exactBackend(exact);
    return [tb, got, got === exact ? null : "WebAssembly decoder unavailable: using the JavaScript one"];
  });
}
const src = params.get("src");
const ui = {
  play: document.getElementById("play"), seek: document.getElementById("seek"),
  counter: document.getElementById("counter"), fps: document.getElementById("fps"),
  stats: document.getElementById("stats"), message: document.getElementById("message"),
};
document.getElementById("name").textContent = src || "";
if (!src) {
  ui.message.textContent = "no stream given (player?src=/files/NAME.dpl)";
} else {
  const player = new WebPlayer(src, document.getElementById("screen"), ui);
  window.dappled = player;
  ui.play.addEventListener("click", () => player.togglePlay());
  ui.seek.addEventListener("input", () => player.seek(Number(ui.seek.value)));
  document.addEventListener("keydown", (e) => { if (e.key === " ") { e.preventDefault(); player.togglePlay(); } });
  player.load().catch((e) => player.fail(`${src}: ${e.message}`));
}
