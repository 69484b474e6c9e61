"""Progress of long operations: a live line on a terminal, one summary line otherwise.

    progress = Progress("export", sys.stderr)
    progress.update("packing layer 3/12 (41.2MiB)")   # redrawn in place on a TTY, ignored otherwise
    ...
    progress.finish("exported 12,031 entries in 4.2s")  # always printed, one line

On a terminal the live line is redrawn at most every `min_interval` seconds (so a
tight loop calling `update` costs next to nothing) and cleared before the summary.
Anywhere else (CI logs, pipes) only the summary is written, so logs get exactly one
line per operation. Used by export, inspect and prune.
"""

from __future__ import annotations

import time
from typing import Callable, List, Optional, TextIO

DEFAULT_MIN_INTERVAL = 0.1


def stream_is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (OSError, ValueError):
        return False


class Progress:
    def __init__(
        self,
        label: str,
        stream: TextIO,
        *,
        live: Optional[bool] = None,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self._stream = stream
        self._live = stream_is_terminal(stream) if live is None else live
        self._min_interval = min_interval
        self._clock = clock
        self._started = clock()
        self._last_draw = float("-inf")
        self._drawn_width = 0

    @property
    def live(self) -> bool:
        """Whether intermediate updates are shown (a terminal)."""
        return self._live

    def elapsed(self) -> float:
        return self._clock() - self._started

    def update(self, text: str, *, force: bool = False) -> None:
        """Shows `text` as the current state (terminals only, rate-limited)."""
        if not self._live:
            return
        now = self._clock()
        if not force and now - self._last_draw < self._min_interval:
            return
        self._last_draw = now
        line = f"{self.label}: {text} [{now - self._started:.1f}s]"
        self._draw(line)

    def finish(self, summary: str) -> None:
        """Clears the live line (if any) and writes `summary` as one line."""
        self.clear()
        self._stream.write(summary.rstrip("\n") + "\n")
        self._stream.flush()

    def clear(self) -> None:
        if self._drawn_width:
            self._stream.write("\r" + " " * self._drawn_width + "\r")
            self._stream.flush()
            self._drawn_width = 0

    def _draw(self, line: str) -> None:
        padding = max(0, self._drawn_width - len(line))
        self._stream.write("\r" + line + " " * padding)
        self._stream.flush()
        self._drawn_width = len(line)


def plural(count: int, singular: str, plural_form: Optional[str] = None) -> str:
    """ "1 layer", "3 layers", "12,031 entries"."""
    word = singular if count == 1 else (plural_form or singular + "s")
    return f"{count:,} {word}"


def human_bytes(size: int) -> str:
    """ "512B", "1.5KiB", "41.2MiB", "3.04GiB" (three significant digits)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(value)}B"
            return f"{value:.3g}{unit}" if value < 100 else f"{value:.0f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


__all__: List[str] = ["Progress", "human_bytes", "plural", "stream_is_terminal"]
