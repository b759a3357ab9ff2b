"""The predict benchmark runs at smoke size (the timed customer's 12/6/2 history is checked
inside the run), and every step of a request is found in the profile."""

from bench import predict as bench_predict
from bench.predict import STEPS


def test_quick_run_reports_latency_and_every_step():
    figures = {f.name.strip(): f for f in bench_predict.run(quick=True)}
    assert figures["predict() p50"].value > 0
    assert figures["parse + predict() p99"].value >= figures["parse + predict() p50"].value
    for step in STEPS:
        assert figures[step].value > 0, step  # a renamed entry point would read as 0 ms
