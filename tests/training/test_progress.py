"""What a person watching a run sees: step lines, progress lines, peak memory, the summary."""

from __future__ import annotations

import logging
import threading

import pytest

from training.progress import Steps, duration, peak_rss_gib, progress, summary_line


def test_a_step_logs_its_start_duration_rows_and_memory(caplog):
    caplog.set_level(logging.INFO, logger="training.progress")
    sent: list[dict[str, float]] = []
    step = Steps()
    with step("load") as s:
        s.rows = {"transactions": 1_234}
    assert set(step.pending) == {"time.load_s", "rss.load_gib"}  # kept until a run is open
    step.attach(sent.append)
    with step("frames"):
        pass
    assert sent[0].keys() == {"time.load_s", "rss.load_gib"}
    assert sent[1].keys() == {"time.frames_s", "rss.frames_gib"}
    assert sent[1]["rss.frames_gib"] > 0 and not step.pending
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "step: load"
    assert lines[1].startswith("step: load done in ") and "transactions 1,234" in lines[1]
    assert "GiB" in lines[1]


def test_counted_progress_in_a_log_is_plain_lines(caplog):
    caplog.set_level(logging.INFO, logger="training.progress")
    with progress("frames", 3, "cutoffs", tty=False, every_s=0.0) as bar:
        for _ in range(3):
            bar.advance()
    lines = [r.getMessage() for r in caplog.records]
    # a line per advance (every_s=0) before the last, and the done line
    assert lines[0].startswith("frames: 1/3 cutoffs (33%)")
    assert lines[-1].startswith("frames: 3/3 cutoffs (100%)")


def test_uncounted_work_in_a_log_says_it_is_still_running():
    seen = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("churn fit: running"):
                seen.set()

    handler = Watch()
    logger = logging.getLogger("training.progress")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        with progress("churn fit", None, "rounds", tty=False, every_s=0.01):
            assert seen.wait(10)  # the heartbeat fires while the work runs
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


def test_progress_on_a_terminal_draws_a_bar(capsys):
    with progress("score", 2, "chunks", tty=True) as bar:
        bar.advance(2)
    assert bar.done == 2


@pytest.mark.parametrize(("seconds", "text"), [(4.21, "4.2 s"), (185, "3 min 05 s")])
def test_durations_read_as_people_write_them(seconds, text):
    assert duration(seconds) == text


def test_the_summary_line_names_time_rows_quarantine_customers_and_version():
    line = summary_line(
        "score",
        65,
        rows_in={"customers": 10, "transactions": 90},
        quarantined=3,
        customers=10,
        version="4",
    )
    assert line == (
        "score done in 1 min 05 s: 100 rows in (customers 10, transactions 90), "
        "3 quarantined, 10 customers scored, model v4"
    )
    assert peak_rss_gib() > 0
