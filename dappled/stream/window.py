"""The playback window (pygame/SDL): shows frames, turns keys into player commands.

Keys: space pauses and resumes, left/right arrows seek back/forward (to an intra frame), q or
Escape quits, closing the window quits.
"""

from __future__ import annotations

import os

import numpy as np

from dappled.errors import InputError

MAX_WINDOW = 1280  # default scale keeps the window about this wide at most


class WindowDisplay:
    """A pygame window of the frame size times an integer scale (0: pick one)."""

    def __init__(self, width: int, height: int, title: str, scale: int = 0) -> None:
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        try:
            import pygame
        except ImportError:
            raise InputError("the player window needs pygame (pip install pygame), "
                             "or play with --headless") from None
        self._pg = pygame
        pygame.display.init()
        if scale <= 0:
            scale = max(1, min(4, MAX_WINDOW // max(width, 1)))
        self.size = (width * scale, height * scale)
        try:
            self.screen = pygame.display.set_mode(self.size)
        except pygame.error as exc:
            raise InputError(f"cannot open a window ({exc}); play with --headless") from None
        pygame.display.set_caption(f"dappled play: {title}")
        self.surface = pygame.Surface((width, height))

    def show(self, index: int, frame: np.ndarray) -> None:
        """Blit the frame (H, W, 3) uint8, scaled to the window, and flip."""
        pg = self._pg
        pg.surfarray.blit_array(self.surface, frame.swapaxes(0, 1))
        if self.surface.get_size() != self.size:
            pg.transform.scale(self.surface, self.size, self.screen)
        else:
            self.screen.blit(self.surface, (0, 0))
        pg.display.flip()

    def poll(self) -> list[str]:
        """Commands from the keyboard and the window manager."""
        pg = self._pg
        out = []
        for ev in pg.event.get():
            if ev.type == pg.QUIT:
                out.append("quit")
            elif ev.type == pg.KEYDOWN:
                key = {pg.K_SPACE: "pause", pg.K_RIGHT: "forward", pg.K_LEFT: "back",
                       pg.K_q: "quit", pg.K_ESCAPE: "quit"}.get(ev.key)
                if key:
                    out.append(key)
        return out

    def close(self) -> None:
        """Close the window."""
        self._pg.display.quit()
