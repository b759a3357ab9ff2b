"""The validation benchmark runs at smoke size and validates its inputs without findings."""

from bench import validation as bench_validation
from features.validation import validate_table


def test_quick_run_reports_every_table():
    figures = {f.name: f for f in bench_validation.run(quick=True)}
    for name in bench_validation.tiny_history():
        assert figures[f"one-customer {name}"].value > 0
    assert figures["large / bare parsing"].value > 0


def test_bench_inputs_are_clean():
    for name, raw in bench_validation.tiny_history().items():
        assert validate_table(name, raw).counts == {}, name
    big = bench_validation.large_transactions(5_000)
    assert len(validate_table("transactions", big).clean) + len(
        validate_table("transactions", big).quarantine
    ) == len(big)
