"""The field representation: latent grids, an autoregressive entropy model and a small synthesis,
fitted per image (Cool-chic / C3 family; docs/models.md).

Modules: ``layout`` (grids, steps, presets), ``model`` and ``fit`` (torch, the encoder's fit),
``arm_kernel`` (the fit's fused rate kernel), ``quantize`` (network quantization), ``integer``
(the quantized network; its ARM is the context model of :mod:`dappled.entropy.latent`, which
predicts and codes the latents) and ``synthesis`` (the exact decoder). The decoder path
(``integer``, ``synthesis``, ``layout``) imports numpy and numba only, never torch.
"""
