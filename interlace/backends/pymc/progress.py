"""The sampling progress display for nutpie runs: a bar in terminals and in notebooks.

In a Jupyter kernel (IPython's ``ZMQInteractiveShell``) the display is an HTML ``<progress>``
element updated in place through IPython's display machinery; elsewhere one line on standard
error rewritten with ``\\r`` (``Sampling 4 chains [#####     ] 2400/8000 iterations 3.1 s``).
Disabled (``progressbar=False``), it writes nothing at all.
"""

from __future__ import annotations

import sys
import time

__all__ = ["SamplingProgress", "in_notebook"]

MIN_INTERVAL = 0.25  # seconds between redraws
WIDTH = 30


def in_notebook() -> bool:
    """Running inside a Jupyter kernel (where a text line on stderr would not redraw)?"""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except AttributeError:  # pragma: no cover - a stripped IPython
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class SamplingProgress:
    """Iterations done over all chains, out of ``chains × per_chain``; ``update(counts)`` takes the
    per-chain counts, ``close()`` draws the final state."""

    def __init__(self, chains: int, per_chain: int, enabled: bool = True):
        self.chains, self.total = chains, chains * per_chain
        self.enabled = enabled and self.total > 0
        self.start = time.perf_counter()
        self.last = -1.0
        self.done = 0
        self.shown = -1  # the count last drawn
        self.handle = None
        if self.enabled and in_notebook():
            from IPython.display import HTML, display

            self.handle = display(HTML(self._html()), display_id=True)

    def _text(self) -> str:
        filled = int(WIDTH * self.done / self.total)
        return (
            f"Sampling {self.chains} chain{'s' * (self.chains > 1)} [{'#' * filled}{' ' * (WIDTH - filled)}] "
            f"{self.done}/{self.total} iterations {time.perf_counter() - self.start:.1f} s"
        )

    def _html(self) -> str:
        return (
            f"<progress value='{self.done}' max='{self.total}' style='width:30em'></progress> "
            f"<span>{self._text().split('] ', 1)[-1]}</span>"
        )

    def update(self, counts, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        self.done = min(self.total, int(sum(counts)))
        if (not final and now - self.last < MIN_INTERVAL) or (final and self.done == self.shown):
            return  # too soon, or the final count is already on screen (each line once in a log)
        self.last, self.shown = now, self.done
        if self.handle is not None:
            from IPython.display import HTML

            self.handle.update(HTML(self._html()))
        else:
            sys.stderr.write("\r" + self._text())
            sys.stderr.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        self.update([self.done], final=True)
        if self.handle is None:
            sys.stderr.write("\n")
            sys.stderr.flush()
