"""A small text progress bar with rate and ETA, written to stderr.

On a terminal the bar is redrawn in place (``\\r``) at most ``refresh_s`` apart; when the stream is not a TTY
(a log file, a cluster job's output) it prints one plain line every ``line_interval_s`` seconds and a final
line, so logs stay readable and small. No dependency beyond the standard library.
"""
import sys
import time

__all__ = ["Progress", "format_duration"]


def format_duration(seconds):
    """Format a duration in seconds as ``H:MM:SS`` (or ``M:SS`` under an hour); ``?`` when unknown (None/inf)."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(round(max(seconds, 0.0)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Progress over ``total`` items with rate (items/s) and ETA.

    Args:
        total: number of items expected (int >= 0).
        desc: short label printed before the bar.
        stream: text stream (default ``sys.stderr``).
        enabled: False silences the bar entirely.
        refresh_s: minimum seconds between redraws on a TTY.
        line_interval_s: seconds between plain lines when the stream is not a TTY.
        width: bar width in characters (TTY only).
        clock: function returning seconds (``time.monotonic``); injectable for tests.
        initial: items already done before the start (a resumed run's skipped items): counted in the position,
            not in the rate.

    Use as a context manager, or call ``close()`` at the end. ``update(n)`` advances the count;
    ``postfix`` (a short string, e.g. ``"3 failed"``) is shown after the rate.
    """

    def __init__(self, total, desc="", stream=None, enabled=True, refresh_s=0.2, line_interval_s=30.0,
                 width=30, clock=time.monotonic, initial=0):
        if int(total) < 0:
            raise ValueError(f"total must be >= 0, got {total}")
        self.total = int(total)
        self.desc = desc
        self.stream = sys.stderr if stream is None else stream
        self.enabled = bool(enabled)
        self.refresh_s = float(refresh_s)
        self.line_interval_s = float(line_interval_s)
        self.width = int(width)
        self.clock = clock
        self.initial = int(initial)
        self.count = self.initial
        self.postfix = ""
        isatty = getattr(self.stream, "isatty", None)
        self.is_tty = bool(isatty and isatty())
        self._start = clock()
        self._last_draw = None
        self._last_len = 0
        self._closed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def elapsed(self):
        """Seconds since the bar was created."""
        return self.clock() - self._start

    def rate(self):
        """Items per second since the start, ``initial`` items excluded (0.0 before the first item)."""
        elapsed = self.elapsed
        done = self.count - self.initial
        return done / elapsed if elapsed > 0 and done else 0.0

    def eta(self):
        """Estimated seconds to completion from the mean rate so far, or None when unknown."""
        rate = self.rate()
        if rate <= 0:
            return None
        return max(self.total - self.count, 0) / rate

    def format(self):
        """The current status as one line (without a line terminator)."""
        frac = self.count / self.total if self.total else 1.0
        rate = self.rate()
        parts = [f"{self.desc}: " if self.desc else ""]
        if self.is_tty:
            filled = int(round(frac * self.width))
            parts.append("[" + "#" * filled + "." * (self.width - filled) + "] ")
        parts.append(f"{self.count}/{self.total} {100.0 * frac:5.1f}% ")
        parts.append(f"{rate:.2f}/s elapsed {format_duration(self.elapsed)} ETA {format_duration(self.eta())}")
        if self.postfix:
            parts.append(f" {self.postfix}")
        return "".join(parts)

    def update(self, n=1, postfix=None):
        """Advance by ``n`` items; redraw when due. ``postfix`` replaces the trailing note if given."""
        self.count += int(n)
        if postfix is not None:
            self.postfix = postfix
        if not self.enabled or self._closed:
            return
        now = self.clock()
        interval = self.refresh_s if self.is_tty else self.line_interval_s
        if self._last_draw is None and not self.is_tty:
            self._last_draw = self._start  # the first plain line comes after one interval, not at once
        if self._last_draw is None or now - self._last_draw >= interval:
            self._draw()
            self._last_draw = now

    def _draw(self, final=False):
        line = self.format()
        if self.is_tty:
            padding = " " * max(self._last_len - len(line), 0)  # erase the tail of a longer previous line
            self._last_len = len(line)
            self.stream.write("\r" + line + padding + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self):
        """Draw the final state once (both modes) and stop."""
        if self._closed:
            return
        self._closed = True
        if self.enabled:
            self._draw(final=True)
