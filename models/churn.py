"""Churn classifier: a LightGBM booster over the feature frame, persisted as model text + JSON.

Probabilities are calibrated on held-out customers (:mod:`models.calibration`) after the fit;
reasons stay in the booster's log-odds (SHAP values). The frame is encoded to a float matrix with a fixed column order; categorical attributes
become their code in the category list stored at fit time (an unseen category is missing),
and LightGBM splits on them natively. The same encoding runs in training, batch scoring and
the server, so a single customer is scored without pandas overhead on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict, cast

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from features.model_outputs import EXPECTED_PURCHASES, P_ALIVE
from models import tree_shap
from models.calibration import Calibrator, choose_calibrator

#: Below this share of the minority class, classes are reweighted (calibration undoes the
#: shift in probabilities afterwards).
IMBALANCE_SHARE = 0.2

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.9,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 2,
    "seed": 7,
}


#: The boosted model is kept over its starting point (the BG/NBD prior alone) only when its
#: validation log loss is lower by more than this many standard errors of the paired per-row
#: difference; otherwise the trees are noise around the prior and are dropped.
MIN_GAIN_Z = 2.0
#: :meth:`ChurnModel.encode` converts the numeric columns this many rows at a time.
ENCODE_ROWS = 1 << 16
#: Floor on BG/NBD expected purchases before the log, in the fitted prior.
_MIN_EXPECTED = 1e-4
#: Below this many rows LightGBM predicts on one thread: it parallelises over rows, so for a
#: request of a few customers a second OpenMP thread only adds its wake-up (on a busy 2-core
#: machine ~10-20 ms at p99 for one row) and, for SHAP values, a spinning barrier.
SINGLE_THREAD_ROWS = 64


class _PredictThreads(TypedDict):
    """Keyword arguments of ``Booster.predict`` (passed on to LightGBM as parameters)."""

    num_threads: int


def _threads(matrix: np.ndarray) -> _PredictThreads:
    """LightGBM prediction parameters for ``matrix``: one thread for a few rows, else
    LightGBM's default (``num_threads=0``, set explicitly because the setting is global)."""
    return {"num_threads": 1 if len(matrix) < SINGLE_THREAD_ROWS else 0}


def _logit(p: float | np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    logit: np.ndarray = np.log(p / (1 - p))
    return logit


def _prior_inputs(alive: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """The fitted prior's inputs: log expected purchases and logit P(alive), shape (n, 2)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.column_stack(
            [
                np.log(np.maximum(expected, _MIN_EXPECTED)),
                _logit(np.clip(alive, 1e-4, 1 - 1e-4)),
            ]
        )


def _row_log_loss(y: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """Per-row binary log loss of log-odds ``margin``."""
    loss: np.ndarray = np.logaddexp(0.0, margin) - y * margin
    return loss


#: :meth:`ChurnModel._encode_plan`: categorical ``(j, name, position)``, the numeric block
#: ``(feature positions, column positions in X)`` or ``None``, the other ``(j, name)``.
_EncodePlan = tuple[
    list[tuple[int, str, dict[str, int]]],
    tuple[list[int], list[int]] | None,
    list[tuple[int, str]],
    dict[str, int],
]


class ChurnModel:
    """LightGBM churn classifier (scikit-learn style).

    Parameters
    ----------
    params : LightGBM parameters, merged over :data:`DEFAULT_PARAMS`.
    num_boost_round : maximum boosting rounds.
    early_stopping_rounds : rounds without validation improvement before stopping.
    balance : ``auto`` reweights the positive class when either class is rarer than
        :data:`IMBALANCE_SHARE`; ``none`` never does.
    prior : ``bgnbd`` boosts (LightGBM ``init_score``) from a logistic regression of the
        label on the BG/NBD outputs (log expected purchases, logit P(alive)) fitted on the
        training rows, when the frame has the BG/NBD features, so trees learn corrections to
        the purchase model rather than relearning it; ``none`` boosts from the base rate.
    min_gain_z : with a prior and a validation set, the trees are kept only if they lower the
        validation log loss by more than ``min_gain_z`` standard errors (paired, per row);
        otherwise the model is the prior alone (``best_iteration_ == 0``). On small data
        (CDNOW, 2,357 customers) this keeps the model from falling below its BG/NBD input.
    """

    def __init__(
        self,
        *,
        params: dict[str, Any] | None = None,
        num_boost_round: int = 1000,
        early_stopping_rounds: int = 50,
        balance: str = "auto",
        prior: str = "bgnbd",
        min_gain_z: float = MIN_GAIN_Z,
    ) -> None:
        self.params = params
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.balance = balance
        self.prior = prior
        self.min_gain_z = min_gain_z

    def fit(
        self,
        X: pd.DataFrame,
        y: pd.Series,
        *,
        X_valid: pd.DataFrame | None = None,
        y_valid: pd.Series | None = None,
    ) -> ChurnModel:
        """Fit on ``X`` (feature frame) and ``y`` (0/1); early stopping on the validation pair."""
        label = np.asarray(y, dtype=float)
        params = self.start_fit(X.dtypes, positive_share=float(label.mean()))
        matrix = self.encode(X)
        if self.uses_prior:
            self.fit_prior(
                matrix[:, self.features_.index(P_ALIVE)],
                matrix[:, self.features_.index(EXPECTED_PURCHASES)],
                label,
            )
        train = lgb.Dataset(
            matrix,
            init_score=self._prior_margin(matrix),
            label=label,
            feature_name=self.features_,
            categorical_feature=list(self.categories_),
            free_raw_data=True,
        )
        # the Dataset holds the only reference now, which LightGBM drops once it has binned
        # the rows: the float matrix (GiBs at millions of rows) is not kept while boosting
        del matrix
        callbacks: list[Callable[..., Any]] = []
        valid_sets = []
        if X_valid is not None and y_valid is not None:
            valid_matrix = self.encode(X_valid)
            valid_sets = [
                lgb.Dataset(
                    valid_matrix,
                    init_score=self._prior_margin(valid_matrix),
                    label=np.asarray(y_valid, dtype=float),
                    reference=train,
                )
            ]
            callbacks = [lgb.early_stopping(self.early_stopping_rounds, verbose=False)]
        self.booster_ = lgb.train(
            params,
            train,
            num_boost_round=self.num_boost_round,
            valid_sets=valid_sets,
            callbacks=callbacks,
        )
        self.best_iteration_ = int(
            self.booster_.best_iteration or self.booster_.current_iteration()
        )
        self.tree_gain_: dict[str, float] | None = None
        if valid_sets:
            self.keep_trees_if_they_help(valid_matrix, np.asarray(y_valid, dtype=float))
        return self

    def keep_trees_if_they_help(
        self, X_valid: pd.DataFrame | np.ndarray, y_valid: np.ndarray | pd.Series
    ) -> None:
        """With a prior: drop the trees (``best_iteration_ = 0``) unless they lower the
        validation log loss by more than ``min_gain_z`` standard errors; the measured gain is
        kept in ``tree_gain_``. Public so a distributed trainer applies the same rule."""
        if self.prior_ is None:
            return
        matrix = X_valid if isinstance(X_valid, np.ndarray) else self.encode(X_valid)
        self.tree_gain_ = self._tree_gain(matrix, np.asarray(y_valid, dtype=float), self.params_)
        if not self.tree_gain_["z"] > self.min_gain_z:
            self.best_iteration_ = 0

    def adopt_booster(
        self,
        booster: lgb.Booster,
        X_valid: pd.DataFrame | np.ndarray,
        y_valid: np.ndarray | pd.Series,
    ) -> ChurnModel:
        """Use ``booster``, trained elsewhere, as :meth:`fit` would have left it, choosing the
        trees on the validation pair ``(X_valid, y_valid)`` by the rules of :meth:`fit`.

        The booster must have been trained on :meth:`encode` output after :meth:`start_fit`
        (and :meth:`fit_prior`) on this model, from :meth:`prior_margin` as ``init_score``
        (``lightgbm.dask`` in training/dask_engine.py). Early stopping is replayed: the
        iteration with the best validation log loss (prior included), stopping after
        ``early_stopping_rounds`` without improvement, as LightGBM's callback would; then
        :meth:`keep_trees_if_they_help`.
        """
        matrix = X_valid if isinstance(X_valid, np.ndarray) else self.encode(X_valid)
        y = np.asarray(y_valid, dtype=float)
        self.booster_ = booster
        margin = self._prior_margin(matrix)
        score = np.zeros(len(matrix)) if margin is None else margin.copy()
        best, best_loss = 0, np.inf
        for i in range(booster.current_iteration()):
            score += booster.predict(matrix, raw_score=True, start_iteration=i, num_iteration=1)
            # LightGBM's binary_logloss, clipped as LightGBM clips it
            p = np.clip(1 / (1 + np.exp(-score)), 1e-15, 1 - 1e-15)
            loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
            if loss < best_loss:
                best, best_loss = i + 1, loss
            elif i + 1 - best >= self.early_stopping_rounds:
                break
        self.best_iteration_ = best
        self.tree_gain_ = None
        self.keep_trees_if_they_help(matrix, y)
        return self

    def prior_margin(self, X: pd.DataFrame | np.ndarray) -> np.ndarray | None:
        """The prior's log-odds of churn per row (the ``init_score`` boosting starts from), or
        ``None`` without a prior; ``X`` is a feature frame or :meth:`encode` output. Public so
        a booster trained elsewhere starts where :meth:`fit` would (:meth:`adopt_booster`)."""
        return self._prior_margin(X if isinstance(X, np.ndarray) else self.encode(X))

    def start_fit(self, dtypes: pd.Series, *, positive_share: float) -> dict[str, Any]:
        """What :meth:`fit` decides before boosting, from the frame's columns and dtypes and
        the share of positive labels: feature list, category lists and LightGBM parameters
        (class weights); returns the parameters and resets the prior (:meth:`fit_prior`).
        Public so a distributed trainer (training/dask_engine.py) makes the same decisions
        from statistics gathered over partitions."""
        self.__dict__.pop("_encode_plans", None)  # :meth:`_encode_plan`'s, for the old fit
        self.__dict__.pop("_category_luts", None)  # :meth:`_category_lut`'s, likewise
        self.features_ = [str(c) for c in dtypes.index]
        self.categories_ = {
            str(c): [str(v) for v in dtype.categories]
            for c, dtype in dtypes.items()
            if isinstance(dtype, pd.CategoricalDtype)
        }
        params = {**DEFAULT_PARAMS, **(self.params or {})}
        share = positive_share
        if self.balance == "auto" and min(share, 1 - share) < IMBALANCE_SHARE and 0 < share < 1:
            params["scale_pos_weight"] = (1 - share) / share
        self.params_ = params
        self.calibrator_: Calibrator | None = None
        self.prior_: dict[str, Any] | None = None
        return params

    @property
    def uses_prior(self) -> bool:
        """Whether :meth:`fit_prior` applies: ``prior="bgnbd"`` and the BG/NBD features are
        among the model's features (set by :meth:`start_fit`)."""
        return self.prior == "bgnbd" and {P_ALIVE, EXPECTED_PURCHASES} <= set(self.features_)

    def fit_prior(
        self, alive: np.ndarray, expected: np.ndarray, label: np.ndarray
    ) -> dict[str, Any] | None:
        """Fit the BG/NBD prior (``prior_``) from the training rows' BG/NBD P(alive),
        expected purchases and 0/1 labels: a logistic regression of the label on
        :func:`_prior_inputs`, weighted like the booster's objective, on the rows with BG/NBD
        features; ``None`` when fewer than half the rows have them or the label has one class
        there. Public so a distributed trainer fits it from the three gathered columns.

        Why fitted rather than a closed form: BG/NBD's own P(no purchase in the horizon)
        ranks customers worse than its expected purchases on CDNOW (one-time buyers get
        P(alive) = 1), and the fitted slope on each output lets the data decide how much
        each says about the label at this horizon.
        """
        alive, expected = np.asarray(alive, dtype=float), np.asarray(expected, dtype=float)
        label = np.asarray(label, dtype=float)
        weight = np.where(label == 1, self.params_.get("scale_pos_weight", 1.0), 1.0)
        share = float(np.average(label, weights=weight))
        known = np.isfinite(alive) & np.isfinite(expected)
        self.prior_ = None
        if known.mean() <= 0.5 or len(np.unique(label[known])) < 2:
            return None
        lr = LogisticRegression(C=1e6, max_iter=1000)  # two inputs: (almost) unpenalised
        inputs = _prior_inputs(alive[known], expected[known])
        lr.fit(inputs, label[known], sample_weight=weight[known])
        coef = [float(c) for c in lr.coef_[0]]
        self.prior_ = {
            "kind": "bgnbd_logistic",
            "coef": coef,
            "intercept": float(lr.intercept_[0]),
            "input_means": [float(v) for v in inputs.mean(axis=0)],
            "fallback_logit": float(_logit(np.clip(share, 1e-4, 1 - 1e-4))),
        }
        return self.prior_

    def _tree_gain(
        self, matrix: np.ndarray, label: np.ndarray, params: dict[str, Any]
    ) -> dict[str, float]:
        """Validation log loss of the prior alone minus that of prior plus trees (per row,
        weighted as in training): mean, standard error and their ratio ``z``."""
        weight = np.where(label == 1, params.get("scale_pos_weight", 1.0), 1.0)
        prior = self._prior_margin(matrix)
        assert prior is not None  # the tree gain is measured against a prior only
        boosted = prior + self._tree_score(matrix, self.best_iteration_)
        diff = weight * (_row_log_loss(label, prior) - _row_log_loss(label, boosted))
        mean = float(diff.mean() / weight.mean())
        se = float(diff.std(ddof=1) / weight.mean() / np.sqrt(len(diff)))
        return {"mean": mean, "se": se, "z": mean / se if se > 0 else 0.0}

    def _tree_score(self, matrix: np.ndarray, n_trees: int) -> np.ndarray:
        """The first ``n_trees`` trees' raw score per row (zero for no trees)."""
        if n_trees <= 0:
            return np.zeros(len(matrix))
        # lightgbm types predict's result for sparse input too; a dense matrix gives an ndarray
        return cast(
            np.ndarray,
            self.booster_.predict(
                matrix, num_iteration=n_trees, raw_score=True, **_threads(matrix)
            ),
        )

    def encode(self, X: pd.DataFrame) -> np.ndarray:
        """The frame as a float64 matrix in :attr:`features_` order (missing columns are NaN).

        Columns of a numeric or boolean dtype are converted together, in one call: scoring
        one customer (``/v1/predict``) would otherwise pay pandas' per-column overhead about
        ninety times. Other columns go through ``pd.to_numeric`` (unparseable values: NaN);
        categorical features become their training category codes (unseen: NaN).
        """
        return self._encode(X, self._encode_plan(X))

    def encode_with_floats(self, X: pd.DataFrame) -> tuple[np.ndarray, dict[str, int]]:
        """:meth:`encode` and :meth:`float_columns` of ``X`` together, from one look-up of
        how ``X``'s columns are converted: scoring needs both, and for one customer the
        look-up (the frame's column names and dtypes) costs a tenth of the encoding."""
        plan = self._encode_plan(X)
        return self._encode(X, plan), plan[3]

    def _encode(self, X: pd.DataFrame, plan: _EncodePlan) -> np.ndarray:
        """:meth:`encode` by ``plan`` (:meth:`_encode_plan` of ``X``)."""
        out = np.full((len(X), len(self.features_)), np.nan)
        categorical, numeric, other, _ = plan
        for j, name, position in categorical:
            out[:, j] = self._category_codes(name, X[name], position)
        for j, name in other:
            out[:, j] = pd.to_numeric(X[name], errors="coerce").to_numpy(
                dtype=float, na_value=np.nan
            )
        if numeric:
            positions, columns = numeric  # by position in X: no label lookup
            if len(X) <= ENCODE_ROWS:
                out[:, positions] = X.take(columns, axis=1).to_numpy(dtype=float, na_value=np.nan)
                return out
            # a block of rows at a time: the whole frame at once holds a second float copy
            # of it (GiBs for millions of rows) on top of ``out``
            for start in range(0, len(X), ENCODE_ROWS):
                rows = X.iloc[start : start + ENCODE_ROWS].take(columns, axis=1)
                out[start : start + len(rows), positions] = rows.to_numpy(
                    dtype=float, na_value=np.nan
                )
        return out

    def float_columns(self, X: pd.DataFrame) -> dict[str, int]:
        """The features of ``X`` with a float64 dtype and their column in :meth:`encode`'s
        matrix, which holds their values unchanged (``X[name].to_numpy(float)``): a caller
        that needs them as arrays reads them there, without pandas' per-column look-up."""
        return self._encode_plan(X)[3]

    def _encode_plan(self, X: pd.DataFrame) -> _EncodePlan:
        """How :meth:`encode` converts each feature of a frame with ``X``'s columns and
        dtypes: categorical ``(j, name, position)`` (``position``: category -> code), the
        numeric block ``(positions, columns)`` (``columns``: their positions in ``X``; or
        ``None``) and the other ``(j, name)`` pairs. Kept per columns and dtypes: the server's
        frames all look alike, and the dtype checks cost more than the conversion for one
        customer."""
        # columns via a NumPy array: iterating a pandas ``str`` Index costs ~50 us for ~90
        key = (tuple(X.columns.to_numpy(dtype=object)), tuple(X.dtypes.to_numpy()))
        cache: dict[tuple[tuple[Any, ...], tuple[Any, ...]], _EncodePlan] = (
            self.__dict__.setdefault("_encode_plans", {})
        )
        plan = cache.get(key)
        if plan is None:
            dtypes = dict(zip(key[0], key[1], strict=True))
            where = {name: i for i, name in enumerate(key[0])}
            categorical: list[tuple[int, str, dict[str, int]]] = []
            numeric: list[int] = []
            other: list[tuple[int, str]] = []
            for j, name in enumerate(self.features_):
                dtype = dtypes.get(name)
                if dtype is None:
                    continue
                if name in self.categories_:
                    position = {c: i for i, c in enumerate(self.categories_[name])}
                    categorical.append((j, name, position))
                elif pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
                    numeric.append(j)
                else:
                    other.append((j, name))
            block = (numeric, [where[self.features_[j]] for j in numeric]) if numeric else None
            floats = {
                self.features_[j]: j for j in numeric if str(dtypes[self.features_[j]]) == "float64"
            }
            plan = (categorical, block, other, floats)
            if len(cache) >= 64:  # bounded: frames of other shapes (tests, notebooks)
                cache.clear()
            cache[key] = plan
        return plan

    def _category_codes(self, name: str, values: pd.Series, position: dict[str, int]) -> np.ndarray:
        """Positions of ``values`` (as text) in the training categories of ``name``
        (``position``: category -> code), as float; NaN where missing or unseen. A
        categorical column is looked up by its few categories, not row by row.

        Numbers are matched by value against the categories that are numbers: a text column
        with too many non-numbers to be numeric trains as categories ("2", "x"), and a value
        posted as the JSON number 2 (or read into a float column, 2.0) must find "2"."""
        dtype = values.dtype
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            by_value: dict[float, int] = {}
            for c, i in position.items():
                number = pd.to_numeric(c, errors="coerce")
                if np.isfinite(number):
                    by_value.setdefault(float(number), i)
            floats = values.to_numpy(dtype=float, na_value=np.nan).tolist()
            return np.array([by_value.get(v, np.nan) for v in floats], dtype=float)
        if isinstance(values.dtype, pd.CategoricalDtype):
            cat = values.array  # the Categorical: its codes without a Series around them
            return cast(np.ndarray, self._category_lut(name, cat.dtype, position)[cat.codes])
        codes = pd.Index(self.categories_[name]).get_indexer(pd.Index(values.astype("string")))
        return np.where(codes >= 0, codes, np.nan)

    def _category_lut(
        self, name: str, dtype: pd.CategoricalDtype, position: dict[str, int]
    ) -> np.ndarray:
        """Training code (float, NaN where unseen) of each category of ``dtype``, and NaN last
        (for code -1, missing). Kept per feature and dtype object: the feature builder gives
        a request's categorical features the same few dtypes call after call
        (features/customers.py keeps them), and reading a text Index's categories one by one
        costs more than the codes for one customer."""
        cache: dict[tuple[str, int], tuple[pd.CategoricalDtype, np.ndarray]] = (
            self.__dict__.setdefault("_category_luts", {})
        )
        hit = cache.get((name, id(dtype)))
        if hit is not None and hit[0] is dtype:
            return hit[1]
        # categories are never missing; str() is their text form
        lut = np.array([position.get(str(c), np.nan) for c in dtype.categories] + [np.nan])
        lut.flags.writeable = False  # shared between calls
        if len(cache) >= 256:  # bounded: posted attributes take any values
            cache.clear()
        cache[(name, id(dtype))] = (dtype, lut)  # the dtype is held: its id stays its own
        return lut

    def _prior_margin(self, matrix: np.ndarray) -> np.ndarray | None:
        """The prior's log-odds of churn per row, or ``None`` without a prior.

        ``bgnbd_logistic`` (:meth:`_fit_prior`): intercept + coef . (log expected purchases,
        logit P(alive)). ``bgnbd`` (models saved before it): the Poisson approximation
        P(no purchase) = 1 - P(alive) + P(alive) exp(-E[N] / P(alive)) (Fader, Hardie & Lee
        2005). Rows without the BG/NBD features start from the training base rate.
        """
        if self.prior_ is None:
            return None
        alive = matrix[:, self.features_.index(P_ALIVE)]
        expected = matrix[:, self.features_.index(EXPECTED_PURCHASES)]
        if self.prior_["kind"] == "bgnbd_logistic":
            margin = self.prior_["intercept"] + _prior_inputs(alive, expected) @ np.asarray(
                self.prior_["coef"]
            )
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                p0 = 1 - alive + alive * np.exp(-expected / np.maximum(alive, 1e-9))
            margin = _logit(np.clip(p0, 1e-4, 1 - 1e-4))
        finite: np.ndarray = np.where(np.isfinite(margin), margin, self.prior_["fallback_logit"])
        return finite

    def predict_raw(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The model's probability per row before calibration (prior plus trees)."""
        matrix = X if isinstance(X, np.ndarray) else self.encode(X)
        if self.prior_ is None:
            return cast(
                np.ndarray,
                self.booster_.predict(
                    matrix, num_iteration=self.best_iteration_, **_threads(matrix)
                ),
            )
        score = self._tree_score(matrix, self.best_iteration_) + self._prior_margin(matrix)
        proba: np.ndarray = 1.0 / (1.0 + np.exp(-score))
        return proba

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Churn probability per row, calibrated when :meth:`calibrate` has been run."""
        raw = self.predict_raw(X)
        return raw if self.calibrator_ is None else self.calibrator_.transform(raw)

    def calibrate(self, X: pd.DataFrame, y: pd.Series) -> dict[str, float]:
        """Choose and fit the calibration on held-out customers; returns each method's
        cross-fitted log loss."""
        self.calibrator_, losses = choose_calibrator(self.predict_raw(X), np.asarray(y, dtype=int))
        return losses

    def contributions(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Per-feature SHAP contributions in log-odds, shape (n, n_features); LightGBM's
        ``pred_contrib`` (the last column, the expected value, is dropped). With the BG/NBD
        prior, its log-odds relative to :meth:`prior_expected_logit` are added: the fitted
        prior's linear terms (centred on their training means) to the BG/NBD expected-purchases
        and P(alive) features, and for rows without BG/NBD features the step to the base
        rate to expected purchases. Contributions plus the trees' expected value plus
        :meth:`prior_expected_logit` sum to the model's log-odds."""
        matrix = X if isinstance(X, np.ndarray) else self.encode(X)
        return self.proba_and_contributions(matrix)[1]

    def proba_and_contributions(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict_proba` and :meth:`contributions` of an encoded matrix from one
        LightGBM call: the trees' raw score is the sum of their SHAP values (expected value
        included), so scoring asks the booster once per row, not twice (for one customer
        each call costs a fixed ~0.2 ms besides the trees)."""
        if self.best_iteration_ > 0 and len(matrix) >= tree_shap.MIN_ROWS:
            # a population (make score): each tree once per distinct path, models/tree_shap.py
            full = tree_shap.pred_contrib(self.booster_, matrix, self.best_iteration_)
            trees, contrib = full.sum(axis=1), full[:, :-1]
        elif self.best_iteration_ > 0:
            full = cast(
                np.ndarray,
                self.booster_.predict(
                    matrix,
                    num_iteration=self.best_iteration_,
                    pred_contrib=True,
                    **_threads(matrix),
                ),
            )
            trees, contrib = full.sum(axis=1), full[:, :-1]
        else:
            trees, contrib = np.zeros(len(matrix)), np.zeros((len(matrix), len(self.features_)))
        prior = self._prior_margin(matrix)
        if prior is None and self.best_iteration_ <= 0:  # no prior, no trees chosen
            proba = self.predict_proba(matrix)
        else:  # the binary objective: the probability is the logistic of the raw score
            raw = 1.0 / (1.0 + np.exp(-(trees if prior is None else trees + prior)))
            proba = raw if self.calibrator_ is None else self.calibrator_.transform(raw)
        if self.prior_ is not None and prior is not None:
            j = self.features_.index(EXPECTED_PURCHASES)
            shift = prior - self.prior_expected_logit()
            if self.prior_["kind"] == "bgnbd_logistic":
                k = self.features_.index(P_ALIVE)
                alive, expected = matrix[:, k], matrix[:, j]
                terms: np.ndarray = (
                    _prior_inputs(alive, expected) - np.asarray(self.prior_["input_means"])
                ) * np.asarray(self.prior_["coef"])
                known = np.isfinite(terms).all(axis=1)
                contrib[known, j] += terms[known, 0]
                contrib[known, k] += terms[known, 1]
                contrib[~known, j] += shift[~known]
            else:
                contrib[:, j] += shift
        return proba, contrib

    def prior_expected_logit(self) -> float:
        """The prior's log-odds at the mean of its training inputs (the base rate for a
        ``bgnbd`` prior); 0 without a prior."""
        if self.prior_ is None:
            return 0.0
        if self.prior_["kind"] != "bgnbd_logistic":
            return float(self.prior_["fallback_logit"])
        coef, means = np.asarray(self.prior_["coef"]), np.asarray(self.prior_["input_means"])
        return float(self.prior_["intercept"] + coef @ means)

    def trees_expected_value(self) -> float:
        """The trees' mean raw score (LightGBM's expected value; 0 without trees)."""
        if self.best_iteration_ <= 0:
            return 0.0
        one = np.zeros((1, len(self.features_)))
        return float(
            np.asarray(
                self.booster_.predict(one, num_iteration=self.best_iteration_, pred_contrib=True)
            )[0, -1]
        )

    def feature_gain(self) -> np.ndarray:
        """Total split gain per feature over the trees in use (zeros when the model is the
        prior alone)."""
        if self.best_iteration_ <= 0:
            return np.zeros(len(self.features_))
        return self.booster_.feature_importance(
            importance_type="gain", iteration=self.best_iteration_
        )

    def model_text(self) -> str:
        """The booster in LightGBM's native text format: the trees up to
        :attr:`best_iteration_`, or every tree when it is 0 (the prior alone; none is used)."""
        return self.booster_.model_to_string(num_iteration=self.best_iteration_)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the booster, JSON-ready."""
        return {
            "features": self.features_,
            "categories": self.categories_,
            "best_iteration": self.best_iteration_,
            "calibration": self.calibrator_.to_dict() if self.calibrator_ is not None else None,
            "prior": self.prior_,
        }

    @classmethod
    def from_text(cls, model_text: str, meta: dict[str, Any]) -> ChurnModel:
        """Rebuild from :meth:`model_text` and :meth:`to_dict` output; parses text only."""
        model = cls()
        model.booster_ = lgb.Booster(model_str=model_text)
        model.features_ = list(meta["features"])
        model.categories_ = {k: list(v) for k, v in meta["categories"].items()}
        model.best_iteration_ = int(meta["best_iteration"])
        calibration = meta.get("calibration")
        model.calibrator_ = Calibrator.from_dict(calibration) if calibration else None
        model.prior_ = meta.get("prior")
        if model.booster_.feature_name() != model.features_:
            raise ValueError("model text and feature list disagree")
        return model
