"""The CDNOW data shipped with lifetimes, read into the canonical transactions table, and the
39-week holdout evaluation of the BG/NBD literature on it.

CDNOW (Fader, Hardie & Lee 2005a): the 23,570 customers who made their first purchase at
CDNOW in the first quarter of 1997, with every purchase up to 1998-06-30 (``CDNOW_master.txt``),
and the 1/10th sample of 2,357 of them (``CDNOW_sample.txt``). Calibration is 1997-01-01 to
1997-09-30 (39 weeks), holdout 1997-10-01 to 1998-06-30 (39 weeks).

The files are read from the installed package folder, never through ``lifetimes.datasets``
(which imports ``pkg_resources``, gone from recent setuptools).

``python -m training.cdnow [sample|master] [--model bgnbd|pareto_nbd|mbgnbd|nbd|auto]`` prints
the fitted parameters and the holdout tables (the figures in ``docs/clv.md``); with
``--candidates``, the table of every CLV candidate on that holdout
(:func:`models.clv_evaluation.evaluate_candidates`).
"""

from __future__ import annotations

import argparse
import sys
from importlib.resources import files
from typing import Literal

import pandas as pd

from features.validation import validate_table
from models.clv import CLVModel
from models.clv_evaluation import (
    CandidatesEvaluation,
    HoldoutEvaluation,
    calibration_holdout,
    evaluate_candidates,
    evaluate_holdout,
)

FILES = {"sample": "CDNOW_sample.txt", "master": "CDNOW_master.txt"}
#: Features at this cutoff see purchases up to and including 1997-09-30 (calibration).
CALIBRATION_CUTOFF = pd.Timestamp("1997-10-01", tz="UTC")
#: The holdout is [CALIBRATION_CUTOFF, HOLDOUT_END): 1997-10-01 to 1998-06-30, 273 days.
HOLDOUT_END = pd.Timestamp("1998-07-01", tz="UTC")
HOLDOUT_DAYS = (HOLDOUT_END - CALIBRATION_CUTOFF).days


def read_cdnow(name: Literal["sample", "master"] = "sample") -> pd.DataFrame:
    """One CDNOW file as the canonical transactions table, validated like any input.

    Columns: ``customer_id`` (str: the sample id, ``"0001"`` .. ``"2357"``, in the sample, which
    is the ``ID`` of the published summary; the master id in the master file), ``timestamp``
    (the order's day, UTC), ``amount`` (dollars; zero-value orders kept), ``number_of_cds`` and
    ``source_line``. The file lists separate orders on separate lines, some identical (same
    customer, day, CDs and dollars); the line number keeps them distinct, so the validator's
    exact-duplicate rule does not drop real orders.

    Raises
    ------
    ValueError
        A row fails validation (the shipped files have none).
    """
    path = files("lifetimes") / "datasets" / FILES[name]
    with path.open(encoding="ascii") as fh:
        raw = pd.read_csv(fh, sep=r"\s+", header=None, dtype="str", engine="python")
    raw = raw.loc[raw[0].str.isdigit()]  # the master file starts with a header line
    id_col = 1 if name == "sample" else 0
    date, cds, dollars = raw.columns[-3:]
    table = pd.DataFrame(
        {
            "customer_id": raw[id_col],
            "timestamp": pd.to_datetime(raw[date], format="%Y%m%d", utc=True),
            "amount": raw[dollars].astype("float64"),
            "number_of_cds": raw[cds].astype("int64"),
            "source_line": raw.index.to_numpy() + 1,
        }
    )
    checked = validate_table("transactions", table)
    if len(checked.quarantine):
        raise ValueError(f"{FILES[name]}: rows failed validation: {checked.counts}")
    return checked.clean


def cdnow_holdout(
    name: Literal["sample", "master"] = "sample", *, model: str = "bgnbd"
) -> tuple[CLVModel, HoldoutEvaluation]:
    """Fit a :class:`CLVModel` (weeks) on the CDNOW calibration period and evaluate it on the
    39-week holdout."""
    transactions = read_cdnow(name)
    summary, actuals = calibration_holdout(transactions, cutoff=CALIBRATION_CUTOFF, end=HOLDOUT_END)
    clv = CLVModel(model=model, time_unit="weeks").fit(summary, as_of=CALIBRATION_CUTOFF)
    return clv, evaluate_holdout(clv, summary, actuals, horizon_days=HOLDOUT_DAYS)


def cdnow_candidates(name: Literal["sample", "master"] = "sample") -> CandidatesEvaluation:
    """Every CLV candidate on the CDNOW 39-week holdout."""
    return evaluate_candidates(
        read_cdnow(name), cutoff=CALIBRATION_CUTOFF, end=HOLDOUT_END, horizon_days=HOLDOUT_DAYS
    )


def print_candidates(ev: CandidatesEvaluation) -> None:
    """The candidates table, the top deciles and the choice, as ``--candidates`` prints them."""
    pd.set_option("display.width", 160)
    print(ev.table.round(3).to_string())
    top = ev.deciles.loc[ev.deciles["decile"] <= 3]
    print("\ntop three deciles by candidate (share of actual holdout spend)")
    print(top.pivot(index="decile", columns="candidate", values="actual_share").round(3))
    learned = ev.learned
    if learned is not None:
        print(
            f"\nlearned: window {learned.window_days:g} days, features {learned.feature_set}, "
            f"{learned.n_trees} trees; cross-validation {learned.cv_}"
        )
    print(f"chosen for ranking: {ev.chosen}; not fitted: {ev.notes or 'none'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.cdnow", description=__doc__)
    parser.add_argument("name", nargs="?", default="sample", choices=list(FILES))
    parser.add_argument("--model", default="bgnbd")
    parser.add_argument("--candidates", action="store_true", help="compare every CLV candidate")
    args = parser.parse_args(argv)
    if args.candidates:
        print_candidates(cdnow_candidates(args.name))
        return 0
    clv, ev = cdnow_holdout(args.name, model=args.model)
    pd.set_option("display.width", 120)
    print(f"CDNOW {args.name}: {clv.n_customers_} customers, model {clv.model_}")
    print("parameters:", {k: round(v, 4) for k, v in clv.params_.items()})
    print(f"log-likelihood {clv.log_likelihood_:.2f}; selection {clv.selection_}")
    print(f"frequency-spend correlation {clv.spend_frequency_corr_:.3f}")
    print("\nconditional expectation (mean holdout repeat purchases)")
    print(ev.conditional_expectation.round(3).to_string())
    print("\ndeciles of predicted CLV (spend over the holdout)")
    print(ev.deciles.round(3).to_string())
    print("\nmetrics")
    for k, v in ev.metrics.items():
        print(f"  {k:28s} {v:,.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
