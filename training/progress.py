"""What a person watching ``make train`` or ``make score`` sees: steps, progress, memory.

- :class:`Steps` times named steps: each logs its start, and when done its duration, the row
  counts it reports and its peak resident memory (RSS); the figures go to MLflow as
  ``time.<step>_s`` and ``rss.<step>_gib`` once a run is open.
- :func:`progress` counts units of work (tables, cutoffs, boosting rounds, chunks of
  customers): a bar on a terminal (rich), and on a pipe or in a log file a plain line every
  :data:`LOG_EVERY_S` seconds, so a long step is never silent.
- :func:`summary_line` is the one line a command ends with.
"""

from __future__ import annotations

import logging
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)
#: Seconds between two progress lines when the output is not a terminal.
LOG_EVERY_S = 10.0
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _reset_peak_rss() -> bool:
    """Start a new peak-RSS window for this process (Linux: writing 5 to ``clear_refs``
    resets ``VmHWM``); ``False`` where that is not possible (then peaks are since start)."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss_gib() -> float:
    """Peak resident memory of this process, GiB: since the last :func:`_reset_peak_rss`
    (``VmHWM``), else since the process started."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _rows(rows: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in rows.items())


def duration(seconds: float) -> str:
    """``seconds`` as people read it: ``4.2 s``, ``3 min 05 s``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s"


@dataclass
class Step:
    """An open step: set ``rows`` (name -> count) for the done line."""

    name: str
    rows: dict[str, int] = field(default_factory=dict)


@dataclass
class Steps:
    """Times steps and records their duration and peak RSS (see the module docstring).

    ``log_metrics``: where the figures go (an open MLflow run's ``metrics``); until one is
    given with :meth:`attach`, they are kept and sent then (the inputs load before the run
    opens)."""

    log_metrics: Callable[[dict[str, float]], None] | None = None
    pending: dict[str, float] = field(default_factory=dict)
    t0: float = field(default_factory=time.perf_counter)
    #: The highest step peak so far, GiB: the process's peak over the steps (resetting the
    #: high-water mark also resets what ``getrusage``/``wait4`` report as the peak).
    peak_gib: float = 0.0

    def attach(self, log_metrics: Callable[[dict[str, float]], None]) -> None:
        """Send the figures from now on (and the ones kept so far) to ``log_metrics``."""
        self.log_metrics = log_metrics
        if self.pending:
            log_metrics(self.pending)
            self.pending = {}

    def detach(self) -> None:
        """Keep the figures again (the run closed)."""
        self.log_metrics = None

    def record(self, values: dict[str, float]) -> None:
        if self.log_metrics is None:
            self.pending.update(values)
        else:
            self.log_metrics(values)

    @property
    def elapsed(self) -> float:
        """Seconds since these steps started."""
        return time.perf_counter() - self.t0

    @contextmanager
    def __call__(self, name: str) -> Iterator[Step]:
        step = Step(name)
        label = name.replace("_", " ")
        log.info("step: %s", label)
        windowed = _reset_peak_rss()
        t0 = time.perf_counter()
        yield step
        seconds = time.perf_counter() - t0
        rss = peak_rss_gib()
        self.peak_gib = max(self.peak_gib, rss)
        self.record({f"time.{name}_s": seconds, f"rss.{name}_gib": rss})
        rows = f", {_rows(step.rows)}" if step.rows else ""
        peak = "peak RSS" if windowed else "peak RSS since start"
        log.info("step: %s done in %s%s (%s %.2f GiB)", label, duration(seconds), rows, peak, rss)


class Progress:
    """Units of work done out of ``total`` (see :func:`progress`); :meth:`advance` after each.
    ``total=None``: work that cannot be counted (a library call), shown as time running."""

    def __init__(
        self, label: str, total: int | None, unit: str, *, every_s: float = LOG_EVERY_S
    ) -> None:
        self.label, self.total, self.unit, self.every_s = label, total, unit, every_s
        self.done = 0
        self.t0 = self.last = time.perf_counter()
        self._bar: object | None = None
        self._task: object | None = None

    def _line(self, *, final: bool = False) -> None:
        elapsed = time.perf_counter() - self.t0
        if self.total is None:
            if not final:  # the step's done line says when it ends
                log.info("%s: running, %s", self.label, duration(elapsed))
            return
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        log.info(
            "%s: %s/%s %s%s, %s",
            self.label,
            f"{self.done:,}",
            f"{self.total:,}",
            self.unit,
            share,
            duration(elapsed),
        )

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, advance=n)  # type: ignore[attr-defined]
            return
        now = time.perf_counter()
        if now - self.last >= self.every_s and self.done < (self.total or 0):
            self.last = now
            self._line()

    def _beat(self, stop: threading.Event) -> None:
        """A line every ``every_s`` seconds until ``stop`` (uncounted work in a log)."""
        while not stop.wait(self.every_s):
            self._line()


@contextmanager
def progress(
    label: str,
    total: int | None,
    unit: str,
    *,
    tty: bool | None = None,
    every_s: float = LOG_EVERY_S,
) -> Iterator[Progress]:
    """Show the progress of ``total`` units of work (``None``: uncounted): a rich progress
    bar when standard error is a terminal (``tty``, default: detected), else a log line every
    ``every_s`` seconds; a log line when counted work is done, either way."""
    bar = Progress(label, total, unit, every_s=every_s)
    tty = sys.stderr.isatty() if tty is None else tty
    if not tty:
        stop = threading.Event()
        beat = None
        if total is None:
            beat = threading.Thread(target=bar._beat, args=(stop,), daemon=True)
            beat.start()
        try:
            yield bar
        finally:
            stop.set()
            if beat is not None:
                beat.join()
        bar._line(final=True)
        return
    from rich.progress import (  # only on a terminal
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with RichProgress(*columns, transient=True) as rich_bar:
        bar._bar, bar._task = rich_bar, rich_bar.add_task(label, total=total)
        yield bar
    bar._bar = None
    bar._line(final=True)


def summary_line(
    command: str,
    seconds: float,
    *,
    rows_in: Mapping[str, int],
    quarantined: int,
    customers: int,
    version: str,
    customers_label: str = "customers scored",
) -> str:
    """The one line ``make train`` / ``make score`` end with: total time, rows in,
    quarantined rows, customers scored and the model version."""
    return (
        f"{command} done in {duration(seconds)}: {sum(rows_in.values()):,} rows in "
        f"({_rows(rows_in)}), {quarantined:,} quarantined, {customers:,} {customers_label}, "
        f"model v{version}"
    )
