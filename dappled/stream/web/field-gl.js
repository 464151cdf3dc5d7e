// The field synthesis's full-size stages as WebGL2 passes (float32 render targets): the 2x
// upsampling of the level-1 accumulator + the level-0 mix + the two 1x1 layers, then the 3x3
// residual block. The coarse levels (a third of the work) stay in exact JavaScript
// (field.js coarseAccumulator). float32 cannot hold the 2**-24 accumulator exactly, so this path
// is within +-1 of the exact decoder, not bit-exact (tests/test_web_field.py says which):
// field.js's JavaScript synthesis stays the default; this one is opt-in (player ?synth=gl).

import { coarseAccumulator, levelStep, values } from "./field.js";

const VS = `#version 300 es
void main() { vec2 p = vec2(float((gl_VertexID & 1) * 4 - 1), float((gl_VertexID >> 1) * 4 - 1)); gl_Position = vec4(p, 0.0, 1.0); }`;

const HEAD = `#version 300 es
precision highp float; precision highp int; precision highp sampler2D; precision highp sampler2DArray;
float rho(float v, float s, float lim) { return clamp(floor(v * s + 0.5) / s, -lim, lim); }
vec4 rho4(vec4 v, float s, float lim) { return clamp(floor(v * s + 0.5) / s, -lim, lim); }
`;

// full size: acc (L layers of 4 channels at level 1), q0 (level-0 latents x step) -> rgb
const FULL = (L) => `${HEAD}
uniform sampler2DArray acc; uniform sampler2D q0; uniform ivec2 asize;
uniform vec4 wa0[${L}]; uniform vec4 ba[${L}]; uniform vec4 wb[${3 * L}]; uniform vec3 bb;
out vec4 o;
void main() {
  ivec2 p = ivec2(gl_FragCoord.xy);
  int ky = p.y >> 1, kx = p.x >> 1;
  int ym = min(ky, asize.y - 1), yp = (p.y & 1) == 0 ? max(ky - 1, 0) : min(ky + 1, asize.y - 1);
  int xm = min(kx, asize.x - 1), xq = (p.x & 1) == 0 ? max(kx - 1, 0) : min(kx + 1, asize.x - 1);
  float qv = texelFetch(q0, p, 0).r;
  vec3 t = bb;
  for (int l = 0; l < ${L}; l++) {
    vec4 a = texelFetch(acc, ivec3(xm, ym, l), 0) * 0.75 + texelFetch(acc, ivec3(xm, yp, l), 0) * 0.25;
    vec4 b = texelFetch(acc, ivec3(xq, ym, l), 0) * 0.75 + texelFetch(acc, ivec3(xq, yp, l), 0) * 0.25;
    vec4 v = rho4(a * 0.75 + b * 0.25 + wa0[l] * qv, 16777216.0, 1048576.0);
    v = max(rho4(v + ba[l], 4096.0, 256.0), 0.0);
    t += vec3(dot(wb[l], v), dot(wb[${L} + l], v), dot(wb[${2 * L} + l], v));
  }
  o = vec4(rho(t.x, 4096.0, 256.0), rho(t.y, 4096.0, 256.0), rho(t.z, 4096.0, 256.0), 0.0);
}`;

// 3x3 conv rgb -> 4 channels of the hidden planes (layer `layer`), ReLU
const CONV_A = (L2) => `${HEAD}
uniform sampler2D rgb; uniform ivec2 size; uniform int layer;
uniform vec4 k[${L2 * 27}]; uniform vec4 kb[${L2}];
out vec4 o;
void main() {
  ivec2 p = ivec2(gl_FragCoord.xy);
  vec4 t = kb[layer];
  for (int dy = 0; dy < 3; dy++) for (int dx = 0; dx < 3; dx++) {
    ivec2 q = p + ivec2(dx - 1, dy - 1);
    if (q.x < 0 || q.y < 0 || q.x >= size.x || q.y >= size.y) continue;
    vec3 x = texelFetch(rgb, q, 0).rgb;
    for (int c = 0; c < 3; c++) t += k[(layer * 3 + c) * 9 + dy * 3 + dx] * x[c];
  }
  o = max(rho4(t, 4096.0, 256.0), 0.0);
}`;

// 3x3 conv hidden -> rgb residual, added, output round(255 v) (clipped on readback, after a
// video's prediction is added)
const CONV_B = (L2) => `${HEAD}
uniform sampler2D rgb; uniform sampler2DArray hid; uniform ivec2 size;
uniform vec4 k[${3 * L2 * 9}]; uniform vec3 kb;
out vec4 o;
void main() {
  ivec2 p = ivec2(gl_FragCoord.xy);
  vec3 t = kb;
  for (int dy = 0; dy < 3; dy++) for (int dx = 0; dx < 3; dx++) {
    ivec2 q = p + ivec2(dx - 1, dy - 1);
    if (q.x < 0 || q.y < 0 || q.x >= size.x || q.y >= size.y) continue;
    for (int l = 0; l < ${L2}; l++) {
      vec4 h = texelFetch(hid, ivec3(q, l), 0);
      int j = l * 9 + dy * 3 + dx;
      t += vec3(dot(k[j], h), dot(k[${L2 * 9} + j], h), dot(k[${2 * L2 * 9} + j], h));
    }
  }
  vec3 v = texelFetch(rgb, p, 0).rgb;
  v = vec3(rho(v.x + rho(t.x, 4096.0, 256.0), 4096.0, 256.0), rho(v.y + rho(t.y, 4096.0, 256.0), 4096.0, 256.0),
           rho(v.z + rho(t.z, 4096.0, 256.0), 4096.0, 256.0));
  o = vec4(floor(v * 255.0 + 0.5), 1.0);
}`;

const OUT = `${HEAD}
uniform sampler2D rgb; out vec4 o;
void main() { vec3 v = texelFetch(rgb, ivec2(gl_FragCoord.xy), 0).rgb; o = vec4(floor(v * 255.0 + 0.5), 1.0); }`;

export class FieldSynthGL {
  // throws an Error that says what is missing (no WebGL2, no float render target)
  constructor() {
    const canvas = typeof document !== "undefined" ? document.createElement("canvas") : new OffscreenCanvas(1, 1);
    const gl = canvas.getContext("webgl2", { antialias: false, depth: false });
    if (!gl) throw new Error("this browser has no WebGL2");
    if (!gl.getExtension("EXT_color_buffer_float")) throw new Error("WebGL2 without EXT_color_buffer_float: no float render target");
    this.gl = gl;
    this.programs = new Map();
  }

  program(src) {
    let prog = this.programs.get(src);
    if (prog) return prog;
    const gl = this.gl;
    const sh = (type, s) => {
      const x = gl.createShader(type);
      gl.shaderSource(x, s);
      gl.compileShader(x);
      if (!gl.getShaderParameter(x, gl.COMPILE_STATUS)) throw new Error("field shader: " + gl.getShaderInfoLog(x));
      return x;
    };
    prog = gl.createProgram();
    gl.attachShader(prog, sh(gl.VERTEX_SHADER, VS));
    gl.attachShader(prog, sh(gl.FRAGMENT_SHADER, src));
    gl.linkProgram(prog);
    if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error("field shader link: " + gl.getProgramInfoLog(prog));
    this.programs.set(src, prog);
    return prog;
  }

  texture(w, h, layers, data, format = "RGBA32F") {
    const gl = this.gl, t = gl.createTexture();
    const [ifmt, fmt] = format === "R32F" ? [gl.R32F, gl.RED] : [gl.RGBA32F, gl.RGBA];
    const target = layers ? gl.TEXTURE_2D_ARRAY : gl.TEXTURE_2D;
    gl.bindTexture(target, t);
    gl.texParameteri(target, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
    gl.texParameteri(target, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);
    if (layers) gl.texImage3D(target, 0, ifmt, w, h, layers, 0, fmt, gl.FLOAT, data);
    else gl.texImage2D(target, 0, ifmt, w, h, 0, fmt, gl.FLOAT, data);
    return t;
  }

  // draw a full-screen triangle into texture t (layer `layer` of an array, or a 2D texture)
  pass(prog, t, layer, w, h, uniforms) {
    const gl = this.gl;
    const fb = gl.createFramebuffer();
    gl.bindFramebuffer(gl.FRAMEBUFFER, fb);
    if (layer === null) gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, t, 0);
    else gl.framebufferTextureLayer(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, t, 0, layer);
    if (gl.checkFramebufferStatus(gl.FRAMEBUFFER) !== gl.FRAMEBUFFER_COMPLETE) throw new Error("float framebuffer incomplete");
    gl.viewport(0, 0, w, h);
    gl.useProgram(prog);
    uniforms(prog);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
    return fb;
  }

  // p, latents: as field.js decodes them -> RGB bytes (H, W, 3)
  run(p, latents, width, height, base = null) {
    const gl = this.gl;
    const S = p.arch.synthHidden, R = p.arch.resHidden, G = p.gs.length;
    const L = Math.ceil(S / 4), L2 = Math.ceil(R / 4);
    const [wa, ba, wb, bb, ka, kba, kb, kbb] = p.synth.map(values);
    const need = Math.max(6 * L + 1, 28 * L2, 27 * L2 + 1);
    if (need > gl.getParameter(gl.MAX_FRAGMENT_UNIFORM_VECTORS)) throw new Error("field network too wide for this GPU's uniforms");
    const { acc, ah, aw } = coarseAccumulator(p, latents, width, height);
    const accData = new Float32Array(L * 4 * ah * aw);
    for (let s = 0; s < S; s++) {
      const l = s >> 2, c = s & 3, src = s * ah * aw, dst = l * 4 * ah * aw;
      for (let i = 0; i < ah * aw; i++) accData[dst + 4 * i + c] = acc[src + i];
    }
    const st0 = levelStep(0, p.shift, p.ladder);
    const q0 = new Float32Array(width * height);
    for (let i = 0; i < q0.length; i++) q0[i] = latents[0][i] * st0;
    const textures = [];
    const tAcc = this.texture(aw, ah, L, accData), tQ = this.texture(width, height, 0, q0, "R32F");
    const tRgb = this.texture(width, height, 0, null);
    textures.push(tAcc, tQ, tRgb);
    const vec4s = (n, f) => { const a = new Float32Array(4 * n); for (let i = 0; i < a.length; i++) a[i] = f(i); return a; };
    const fbs = [];
    const bind = (prog, name, unit, target, t) => {
      gl.activeTexture(gl.TEXTURE0 + unit);
      gl.bindTexture(target, t);
      gl.uniform1i(gl.getUniformLocation(prog, name), unit);
    };
    const u4 = (prog, name, a) => gl.uniform4fv(gl.getUniformLocation(prog, name), a);
    const full = this.program(FULL(L));
    fbs.push(this.pass(full, tRgb, null, width, height, (prog) => {
      bind(prog, "acc", 0, gl.TEXTURE_2D_ARRAY, tAcc);
      bind(prog, "q0", 1, gl.TEXTURE_2D, tQ);
      gl.uniform2i(gl.getUniformLocation(prog, "asize"), aw, ah);
      u4(prog, "wa0", vec4s(L, (i) => (i < S ? wa[i * G] : 0)));
      u4(prog, "ba", vec4s(L, (i) => (i < S ? ba[i] : 0)));
      u4(prog, "wb", vec4s(3 * L, (i) => { const c = Math.floor(i / (4 * L)), s = i % (4 * L); return s < S ? wb[c * S + s] : 0; }));
      gl.uniform3f(gl.getUniformLocation(prog, "bb"), bb[0], bb[1], bb[2]);
    }));
    const tOut = this.texture(width, height, 0, null);
    textures.push(tOut);
    let outFb;
    if (R) {
      const tHid = this.texture(width, height, L2, null);
      textures.push(tHid);
      const ca = this.program(CONV_A(L2));
      // k[(layer * 3 + c) * 9 + tap] = Ka[4 * layer + j, c, tap] for j = 0..3
      const kA = vec4s(L2 * 27, (i) => {
        const j = i & 3, v = i >> 2, tap = v % 9, c = Math.floor(v / 9) % 3, layer = Math.floor(v / 27), o = 4 * layer + j;
        return o < R ? ka[(o * 3 + c) * 9 + tap] : 0;
      });
      const kbA = vec4s(L2, (i) => (i < R ? kba[i] : 0));
      for (let layer = 0; layer < L2; layer++) {
        fbs.push(this.pass(ca, tHid, layer, width, height, (prog) => {
          bind(prog, "rgb", 0, gl.TEXTURE_2D, tRgb);
          gl.uniform2i(gl.getUniformLocation(prog, "size"), width, height);
          gl.uniform1i(gl.getUniformLocation(prog, "layer"), layer);
          u4(prog, "k", kA);
          u4(prog, "kb", kbA);
        }));
      }
      const cb = this.program(CONV_B(L2));
      // k[c * L2 * 9 + l * 9 + tap] = Kb[c, 4 * l + j, tap]
      const kB = vec4s(3 * L2 * 9, (i) => {
        const j = i & 3, v = i >> 2, tap = v % 9, l = Math.floor(v / 9) % L2, c = Math.floor(v / (9 * L2)), ci = 4 * l + j;
        return ci < R ? kb[(c * R + ci) * 9 + tap] : 0;
      });
      outFb = this.pass(cb, tOut, null, width, height, (prog) => {
        bind(prog, "rgb", 0, gl.TEXTURE_2D, tRgb);
        bind(prog, "hid", 1, gl.TEXTURE_2D_ARRAY, tHid);
        gl.uniform2i(gl.getUniformLocation(prog, "size"), width, height);
        u4(prog, "k", kB);
        gl.uniform3f(gl.getUniformLocation(prog, "kb"), kbb[0], kbb[1], kbb[2]);
      });
    } else {
      outFb = this.pass(this.program(OUT), tOut, null, width, height, (prog) => bind(prog, "rgb", 0, gl.TEXTURE_2D, tRgb));
    }
    fbs.push(outFb);
    const px = new Float32Array(4 * width * height);
    gl.bindFramebuffer(gl.FRAMEBUFFER, outFb);
    gl.readPixels(0, 0, width, height, gl.RGBA, gl.FLOAT, px);
    const rgb = new Uint8Array(3 * width * height);
    for (let i = 0; i < width * height; i++) {
      for (let c = 0; c < 3; c++) {
        const q = px[4 * i + c] + (base ? base[3 * i + c] : 0);
        rgb[3 * i + c] = q < 0 ? 0 : q > 255 ? 255 : q;
      }
    }
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    for (const fb of fbs) gl.deleteFramebuffer(fb);
    for (const t of textures) gl.deleteTexture(t);
    return rgb;
  }
}
