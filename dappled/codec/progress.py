"""Progress bars of the encoders (tqdm, imported only when a bar is shown): one helper for every
codec's fit and every frame or image loop, so they all look and behave alike."""

from __future__ import annotations

from typing import Any


def bar(total: int, desc: str, unit: str, enabled: bool = True, initial: int = 0) -> Any:
    """A tqdm bar that leaves no line behind (disabled: every call is a no-op)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=False, disable=not enabled)


class FitProgress:
    """A bar fed by a fitter's ``(step, total, psnr[, bpp])`` callback; silent when disabled.

    A new ``total`` (a refit after the first fit) starts a new bar. The PSNR (and estimated bpp,
    when the fitter gives one) shows after the bar; it is redrawn at tqdm's own pace, so a fast
    fit pays nothing for it.
    """

    def __init__(self, enabled: bool, label: str = "fit") -> None:
        self.enabled = enabled
        self.label = label
        self.bar: Any = None

    def __enter__(self) -> FitProgress:
        return self

    def update(self, step: int, total: int, psnr: float, bpp: float | None = None) -> None:
        """Record the fitter's progress (step of total, the current PSNR and bpp)."""
        if not self.enabled:
            return
        if self.bar is None or self.bar.total != total:
            if self.bar is not None:
                self.bar.close()
            self.bar = bar(total, self.label, "it")
        text = f"{psnr:.2f} dB" if bpp is None else f"{psnr:.2f} dB {bpp:.3f} bpp"
        self.bar.set_postfix_str(text, refresh=False)
        self.bar.update(step - self.bar.n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
