// WebGL2 splat renderer: one instanced quad per Gaussian over its pixel box, each fragment adds
// color * exp(-m2 / 2) (zero beyond m2 > 9) into a float render target with additive blending
// (the accumulated weighted sum of dappled.models.splat, no sorting), then a second pass rounds
// to 8 bits and clamps, as dappled.codec.splat.decoder.render_quantized does.

import { INSTANCE_FLOATS } from "./dpl.js";

const SPLAT_VS = `#version 300 es
layout(location = 0) in vec2 corner;
layout(location = 1) in vec2 mean;
layout(location = 2) in vec3 conic;
layout(location = 3) in vec3 color;
layout(location = 4) in vec4 box;
uniform vec2 size;
flat out vec2 vMean;
flat out vec3 vConic;
flat out vec3 vColor;
void main() {
  vec2 p = mix(box.xy, box.zw, corner);
  gl_Position = vec4(p / size * 2.0 - 1.0, 0.0, 1.0);
  vMean = mean; vConic = conic; vColor = color;
}`;

const SPLAT_FS = `#version 300 es
precision highp float;
flat in vec2 vMean;
flat in vec3 vConic;
flat in vec3 vColor;
out vec4 outColor;
void main() {
  vec2 d = gl_FragCoord.xy - vMean;  // pixel (row i, col j) has its centre at (j + 0.5, i + 0.5)
  float m2 = vConic.x * d.x * d.x + (vConic.y + vConic.y) * d.x * d.y + vConic.z * d.y * d.y;
  if (m2 > 9.0) discard;
  outColor = vec4(vColor * exp(-0.5 * m2), 1.0);
}`;

const RESOLVE_VS = `#version 300 es
void main() {
  vec2 p = vec2(float((gl_VertexID & 1) * 4 - 1), float((gl_VertexID & 2) * 2 - 1));
  gl_Position = vec4(p, 0.0, 1.0);
}`;

const RESOLVE_FS = `#version 300 es
precision highp float;
uniform highp sampler2D acc;
uniform int rows;
out vec4 outColor;
void main() {
  ivec2 p = ivec2(gl_FragCoord.xy);
  vec3 v = texelFetch(acc, ivec2(p.x, rows - 1 - p.y), 0).rgb;  // image row 0 at the top
  outColor = vec4(clamp(floor(v * 255.0 + 0.5), 0.0, 255.0) / 255.0, 1.0);
}`;

function compile(gl, vs, fs) {
  const prog = gl.createProgram();
  for (const [type, src] of [[gl.VERTEX_SHADER, vs], [gl.FRAGMENT_SHADER, fs]]) {
    const sh = gl.createShader(type);
    gl.shaderSource(sh, src);
    gl.compileShader(sh);
    if (!gl.getShaderParameter(sh, gl.COMPILE_STATUS)) throw new Error("shader: " + gl.getShaderInfoLog(sh));
    gl.attachShader(prog, sh);
  }
  gl.linkProgram(prog);
  if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error("link: " + gl.getProgramInfoLog(prog));
  return prog;
}

export class SplatRenderer {
  constructor(canvas, width, height) {
    canvas.width = width;
    canvas.height = height;
    const gl = canvas.getContext("webgl2", { antialias: false, alpha: false, depth: false, preserveDrawingBuffer: false });
    if (!gl) throw new Error("this browser has no WebGL2");
    this.gl = gl;
    this.width = width;
    this.height = height;
    // float accumulation: RGBA32F with EXT_float_blend, else RGBA16F
    const cbf = gl.getExtension("EXT_color_buffer_float");
    const blend32 = gl.getExtension("EXT_float_blend");
    if (!cbf) throw new Error("WebGL2 without EXT_color_buffer_float: no float render target");
    this.format = blend32 ? "RGBA32F" : "RGBA16F";
    this.tex = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, this.tex);
    gl.texStorage2D(gl.TEXTURE_2D, 1, blend32 ? gl.RGBA32F : gl.RGBA16F, width, height);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    this.fbo = gl.createFramebuffer();
    gl.bindFramebuffer(gl.FRAMEBUFFER, this.fbo);
    gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, this.tex, 0);
    if (gl.checkFramebufferStatus(gl.FRAMEBUFFER) !== gl.FRAMEBUFFER_COMPLETE) throw new Error("float framebuffer incomplete");
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);

    this.splat = compile(gl, SPLAT_VS, SPLAT_FS);
    this.resolve = compile(gl, RESOLVE_VS, RESOLVE_FS);
    this.uSize = gl.getUniformLocation(this.splat, "size");
    this.uAcc = gl.getUniformLocation(this.resolve, "acc");
    this.uRows = gl.getUniformLocation(this.resolve, "rows");

    this.vao = gl.createVertexArray();
    gl.bindVertexArray(this.vao);
    const quad = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, quad);
    gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([0, 0, 1, 0, 0, 1, 1, 1]), gl.STATIC_DRAW);
    gl.enableVertexAttribArray(0);
    gl.vertexAttribPointer(0, 2, gl.FLOAT, false, 0, 0);
    this.inst = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, this.inst);
    const stride = INSTANCE_FLOATS * 4;
    for (const [loc, n, off] of [[1, 2, 0], [2, 3, 2], [3, 3, 5], [4, 4, 8]]) {
      gl.enableVertexAttribArray(loc);
      gl.vertexAttribPointer(loc, n, gl.FLOAT, false, stride, off * 4);
      gl.vertexAttribDivisor(loc, 1);
    }
    gl.bindVertexArray(null);
    this.emptyVao = gl.createVertexArray();
  }

  // Draw `count` Gaussians (instance data from dpl.gaussianInstances) and show the frame.
  draw(data, count) {
    const gl = this.gl;
    gl.bindFramebuffer(gl.FRAMEBUFFER, this.fbo);
    gl.viewport(0, 0, this.width, this.height);
    gl.clearColor(0, 0, 0, 0);
    gl.clear(gl.COLOR_BUFFER_BIT);
    if (count > 0) {
      gl.useProgram(this.splat);
      gl.uniform2f(this.uSize, this.width, this.height);
      gl.bindVertexArray(this.vao);
      gl.bindBuffer(gl.ARRAY_BUFFER, this.inst);
      gl.bufferData(gl.ARRAY_BUFFER, data.subarray(0, count * INSTANCE_FLOATS), gl.STREAM_DRAW);
      gl.enable(gl.BLEND);
      gl.blendEquation(gl.FUNC_ADD);
      gl.blendFunc(gl.ONE, gl.ONE);
      gl.drawArraysInstanced(gl.TRIANGLE_STRIP, 0, 4, count);
      gl.disable(gl.BLEND);
      gl.bindVertexArray(null);
    }
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    gl.viewport(0, 0, this.width, this.height);
    gl.useProgram(this.resolve);
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, this.tex);
    gl.uniform1i(this.uAcc, 0);
    gl.uniform1i(this.uRows, this.height);
    gl.bindVertexArray(this.emptyVao);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
    gl.bindVertexArray(null);
  }

  // Compile and run both passes once on a dummy Gaussian, and wait for the GPU.
  warmUp() {
    const d = new Float32Array([0.5, 0.5, 1, 0, 1, 0, 0, 0, 0, 0, 1, 1]);
    this.draw(d, 1);
    this.finish();
  }

  finish() {
    const px = new Uint8Array(4);
    this.gl.readPixels(0, 0, 1, 1, this.gl.RGBA, this.gl.UNSIGNED_BYTE, px); // waits for the frame
  }

  // The frame on screen as RGB rows, top row first (for tests and snapshots).
  readRGB() {
    const gl = this.gl, w = this.width, h = this.height;
    const px = new Uint8Array(w * h * 4);
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    gl.readPixels(0, 0, w, h, gl.RGBA, gl.UNSIGNED_BYTE, px);
    const out = new Uint8Array(w * h * 3);
    for (let y = 0; y < h; y++) {
      const src = (h - 1 - y) * w * 4;
      for (let x = 0; x < w; x++) {
        out[(y * w + x) * 3] = px[src + 4 * x];
        out[(y * w + x) * 3 + 1] = px[src + 4 * x + 1];
        out[(y * w + x) * 3 + 2] = px[src + 4 * x + 2];
      }
    }
    return out;
  }
}
