"""The synthesis' full-size stage and its gradient in numba, for the fit on the CPU.

In torch the full-size stage (2x upsampling of the level-1 accumulator, the level-0 mix, the
1x1 ReLU layer, the RGB layer and the 3x3 residual block) is a dozen separate sweeps over
images of up to ``synth_hidden`` channels, each with its own backward sweep, and costs more of an
iteration than the rate. Here a few row-by-row passes do the forward, and a few more the
backward, with the loops over a row innermost (the ones the compiler vectorizes). Float32, as
the torch fit: this is the fit's synthesis, not the decoder's exact arithmetic
(:mod:`.synthesis`). The tests hold it to :meth:`FieldModel.render_torch`.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from dappled.models.field.synthesis import conv3x3_row

_F32 = np.float32


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _up2_row(acc: np.ndarray, yy: int, cols: int, tmp: np.ndarray, out: np.ndarray) -> None:
    """Row yy of the 2x bilinear upsampling (taps 3/4, 1/4, edges clamped) of every channel of
    acc (S, h1, w1) into out (S, cols); tmp is an (S, 2 * w1 + 4) scratch.

    Written without branches in the loops (edges go through a padded copy) so they vectorize."""
    s_dim, h1, w1 = acc.shape
    k = yy // 2
    ym = min(k, h1 - 1)
    yp = max(k - 1, 0) if yy % 2 == 0 else min(k + 1, h1 - 1)
    for s in range(s_dim):
        a = acc[s, ym]
        b = acc[s, yp]
        t = tmp[s]  # t[1 + j]: the row at column j; t[0], t[w1 + 1]: the clamped edges
        for j in range(w1):
            t[j + 1] = _F32(0.75) * a[j] + _F32(0.25) * b[j]
        t[0] = t[1]
        t[w1 + 1] = t[w1]
        o = out[s]
        for j in range(cols // 2):
            o[2 * j] = _F32(0.75) * t[j + 1] + _F32(0.25) * t[j]
            o[2 * j + 1] = _F32(0.75) * t[j + 1] + _F32(0.25) * t[j + 2]
        if cols % 2:
            j = cols // 2
            o[2 * j] = _F32(0.75) * t[j + 1] + _F32(0.25) * t[j]


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _up2_row_back(g: np.ndarray, yy: int, cols: int, tmp: np.ndarray, gacc: np.ndarray) -> None:
    """Adds the gradient of :func:`_up2_row` (g: (S, cols) at output row yy) into gacc."""
    s_dim, h1, w1 = gacc.shape
    k = yy // 2
    ym = min(k, h1 - 1)
    yp = max(k - 1, 0) if yy % 2 == 0 else min(k + 1, h1 - 1)
    for s in range(s_dim):
        t = tmp[s]  # t[1 + x]: g at column x, zero beyond the row
        gr = g[s]
        t[0] = 0.0
        for x in range(cols):
            t[x + 1] = gr[x]
        for x in range(cols + 1, 2 * w1 + 4):
            t[x] = 0.0
        a = gacc[s, ym]
        b = gacc[s, yp]
        for j in range(w1):  # column j feeds outputs 2j - 1 .. 2j + 2
            v = _F32(0.75) * (t[2 * j + 1] + t[2 * j + 2]) + _F32(0.25) * (t[2 * j] + t[2 * j + 3])
            a[j] += _F32(0.75) * v
            b[j] += _F32(0.25) * v
        # the clamped edges: output 0 reads column 0 twice, output 2 w1 - 1 column w1 - 1
        e0 = _F32(0.25) * t[1]
        e1 = _F32(0.25) * t[2 * w1]
        a[0] += _F32(0.75) * e0
        b[0] += _F32(0.25) * e0
        a[w1 - 1] += _F32(0.75) * e1
        b[w1 - 1] += _F32(0.25) * e1


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _hidden_row(acc: np.ndarray, q0: np.ndarray, wa0: np.ndarray, ba: np.ndarray, yy: int,
                tmp: np.ndarray, full: np.ndarray) -> None:
    """Pre-activation of the hidden layer at image row yy: upsampled accumulator + level-0 mix
    + bias, into full (S, W)."""
    s_dim, cols = full.shape
    _up2_row(acc, yy, cols, tmp, full)
    for s in range(s_dim):
        f = full[s]
        bs = ba[s]
        for g in range(q0.shape[0]):
            w = wa0[s, g]
            qr = q0[g, yy]
            for x in range(cols):
                f[x] += w * qr[x]
        for x in range(cols):
            f[x] += bs


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _conv3x3(x: np.ndarray, k: np.ndarray, b: np.ndarray, relu: bool, out: np.ndarray) -> None:
    """out = conv3x3(x) + b (zero padding), ReLU if asked; (C, H, W) -> (O, H, W)."""
    _, hh, ww = x.shape
    for o in range(k.shape[0]):
        for y in range(hh):
            r = out[o, y]
            r[:] = b[o]
            conv3x3_row(x, k, o, y, r)
            if relu:
                for xx in range(ww):
                    r[xx] = max(r[xx], _F32(0.0))


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _conv3x3_back(x: np.ndarray, k: np.ndarray, g: np.ndarray, gx: np.ndarray, gk: np.ndarray,
                  gb: np.ndarray) -> None:
    """Gradients of out = conv3x3(x) + b given g = dL/dout: adds into gx (the input's), gk
    (float64, the kernel's) and gb (float64)."""
    c_dim, hh, ww = x.shape
    o_dim = k.shape[0]
    for o in range(o_dim):
        for y in range(hh):
            gr = g[o, y]
            s = _F32(0.0)
            for xx in range(ww):
                s += gr[xx]
            gb[o] += s
            for c in range(c_dim):
                for dy in range(3):
                    sy = y + dy - 1
                    if sy < 0 or sy >= hh:
                        continue
                    src = x[c, sy]
                    dst = gx[c, sy]
                    w0 = k[o, c, dy, 0]
                    w1 = k[o, c, dy, 1]
                    w2 = k[o, c, dy, 2]
                    s0 = _F32(0.0)
                    s1 = _F32(0.0)
                    s2 = _F32(0.0)
                    for xx in range(1, ww - 1):
                        s0 += gr[xx] * src[xx - 1]
                        s1 += gr[xx] * src[xx]
                        s2 += gr[xx] * src[xx + 1]
                    s1 += gr[0] * src[0]
                    if ww > 1:
                        s2 += gr[0] * src[1]
                        s0 += gr[ww - 1] * src[ww - 2]
                        s1 += gr[ww - 1] * src[ww - 1]
                    gk[o, c, dy, 0] += s0
                    gk[o, c, dy, 1] += s1
                    gk[o, c, dy, 2] += s2
                    # dst[xx - 1] += w0 * gr[xx], dst[xx] += w1 * gr[xx], dst[xx + 1] += w2 * gr[xx]
                    for xx in range(1, ww - 1):
                        dst[xx] += w0 * gr[xx + 1] + w1 * gr[xx] + w2 * gr[xx - 1]
                    dst[0] += w1 * gr[0] + (w0 * gr[1] if ww > 1 else _F32(0.0))
                    if ww > 1:
                        dst[ww - 1] += w1 * gr[ww - 1] + w2 * gr[ww - 2]


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _forward(acc: np.ndarray, q0: np.ndarray, wa0: np.ndarray, ba: np.ndarray, wb: np.ndarray,
             bb: np.ndarray, ka: np.ndarray, kba: np.ndarray, kb: np.ndarray, kbb: np.ndarray,
             rgb: np.ndarray, t: np.ndarray, out: np.ndarray) -> None:
    """rgb (the RGB layer), t (the residual block's hidden ReLU, when it has one) and out."""
    s_dim = acc.shape[0]
    _, hh, ww = out.shape
    full = np.zeros((s_dim, ww), dtype=_F32)
    tmp = np.zeros((s_dim, 2 * acc.shape[2] + 4), dtype=_F32)
    for y in range(hh):
        _hidden_row(acc, q0, wa0, ba, y, tmp, full)
        for s in range(s_dim):
            f = full[s]
            for x in range(ww):
                f[x] = max(f[x], _F32(0.0))
        for o in range(3):
            r = rgb[o, y]
            bo = bb[o]
            for x in range(ww):
                r[x] = bo
            for s in range(s_dim):
                w = wb[o, s]
                f = full[s]
                for x in range(ww):
                    r[x] += w * f[x]
    if t.shape[0]:
        _conv3x3(rgb, ka, kba, True, t)
        _conv3x3(t, kb, kbb, False, out)
        for o in range(3):
            for y in range(hh):
                r = out[o, y]
                src = rgb[o, y]
                for x in range(ww):
                    r[x] += src[x]
    else:
        out[:] = rgb


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _backward(acc: np.ndarray, q0: np.ndarray, wa0: np.ndarray, ba: np.ndarray, wb: np.ndarray,
              ka: np.ndarray, kb: np.ndarray, rgb: np.ndarray, t: np.ndarray, g_out: np.ndarray,
              g_acc: np.ndarray, g_q0: np.ndarray, g_wa0: np.ndarray, g_ba: np.ndarray,
              g_wb: np.ndarray, g_bb: np.ndarray, g_ka: np.ndarray, g_kba: np.ndarray,
              g_kb: np.ndarray, g_kbb: np.ndarray) -> None:
    """Gradients of everything :func:`_forward` read, given dL/d out (weights' in float64)."""
    s_dim = acc.shape[0]
    _, hh, ww = g_out.shape
    if t.shape[0]:
        g_t = np.zeros(t.shape, dtype=_F32)
        _conv3x3_back(t, kb, g_out, g_t, g_kb, g_kbb)
        for r in range(t.shape[0]):
            for y in range(hh):
                gr = g_t[r, y]
                tr = t[r, y]
                for x in range(ww):
                    gr[x] = gr[x] if tr[x] > 0 else _F32(0.0)
        g_rgb = g_out.copy()
        _conv3x3_back(rgb, ka, g_t, g_rgb, g_ka, g_kba)
    else:
        g_rgb = g_out
    full = np.zeros((s_dim, ww), dtype=_F32)
    g_full = np.zeros((s_dim, ww), dtype=_F32)
    tmp = np.zeros((s_dim, 2 * acc.shape[2] + 4), dtype=_F32)
    n0 = q0.shape[0]
    for y in range(hh):
        _hidden_row(acc, q0, wa0, ba, y, tmp, full)
        for o in range(3):
            gr = g_rgb[o, y]
            s = _F32(0.0)
            for x in range(ww):
                s += gr[x]
            g_bb[o] += s
        for s_ in range(s_dim):
            f = full[s_]
            gf = g_full[s_]
            for x in range(ww):
                gf[x] = 0.0
            for o in range(3):
                w = wb[o, s_]
                gr = g_rgb[o, y]
                sm = _F32(0.0)
                for x in range(ww):
                    sm += gr[x] * max(f[x], _F32(0.0))
                    gf[x] += w * gr[x]
                g_wb[o, s_] += sm
            sm = _F32(0.0)
            for x in range(ww):
                gf[x] = gf[x] if f[x] > 0 else _F32(0.0)
                sm += gf[x]
            g_ba[s_] += sm
            for g in range(n0):
                qr = q0[g, y]
                gq = g_q0[g, y]
                w = wa0[s_, g]
                sm = _F32(0.0)
                for x in range(ww):
                    sm += gf[x] * qr[x]
                    gq[x] += w * gf[x]
                g_wa0[s_, g] += sm
        _up2_row_back(g_full, y, ww, tmp, g_acc)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().contiguous().numpy()


class FullSize(torch.autograd.Function):
    """The full-size stage: acc (S, h1, w1) at level 1, q0 (n0, H, W) the level-0 latents
    already times their step, wa0 (S, n0) their columns of the first layer -> RGB (3, H, W)."""

    @staticmethod
    def forward(ctx, acc, q0, wa0, ba, wb, bb, ka, kba, kb, kbb):  # type: ignore[override]
        arrays = [_np(a) for a in (acc, q0, wa0, ba, wb, bb, ka, kba, kb, kbb)]
        _, hh, ww = q0.shape
        rgb = np.empty((3, hh, ww), dtype=_F32)
        t = np.empty((ka.shape[0], hh, ww), dtype=_F32)
        out = np.empty((3, hh, ww), dtype=_F32)
        _forward(*arrays, rgb, t, out)
        ctx.arrays = arrays
        ctx.saved = (rgb, t)
        ctx.device = acc.device
        return torch.from_numpy(out).to(acc.device)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        acc, q0, wa0, ba, wb, bb, ka, kba, kb, kbb = ctx.arrays
        rgb, t = ctx.saved
        g_out = _np(grad)
        g_acc = np.zeros_like(acc)
        g_q0 = np.zeros_like(q0)
        weights = (wa0, ba, wb, bb, ka, kba, kb, kbb)
        g_w = [np.zeros(w.shape, dtype=np.float64) for w in weights]
        _backward(acc, q0, wa0, ba, wb, ka, kb, rgb, t, g_out, g_acc, g_q0, *g_w)
        ctx.arrays = ctx.saved = None
        dev = ctx.device
        return (torch.from_numpy(g_acc).to(dev), torch.from_numpy(g_q0).to(dev),
                *(torch.from_numpy(g.astype(_F32)).to(dev) for g in g_w))
