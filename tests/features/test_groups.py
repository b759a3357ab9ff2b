"""The array core of the families: a table's past rows only, and the one-frame assembly
(absent customers missing or zero, categoricals aligned, column order kept), and frames
built from arrays as pd.DataFrame builds them from a dict."""

import numpy as np
import pandas as pd
import pytest

from features.groups import SMALL, Groups, aligned_frame, arrays_frame, column_labels, factorize

AS_OF = pd.Timestamp("2025-01-01", tz="UTC")


def test_groups_read_only_rows_strictly_before_as_of():
    events = pd.DataFrame(
        {
            "customer_id": pd.Series(["B", "A", "B", "C"], dtype="str"),
            "timestamp": pd.to_datetime(["2024-12-30", "2024-12-31", "2025-01-01", None], utc=True),
            "score": [1.0, np.nan, 3.0, 4.0],
            "resolved": pd.array([False, None, False, True], dtype="boolean"),
        }
    )
    g = Groups(events, as_of=AS_OF)
    assert list(g.ids) == ["B", "A"]  # B's row at as_of and C's row without a time are out
    assert g.age_days.tolist() == [2.0, 1.0]
    np.testing.assert_array_equal(g.values("score"), [1.0, np.nan])
    assert g.is_false("resolved").tolist() == [True, False]  # missing is not false
    assert np.isnan(g.values("csat")).all() and len(g.values("csat")) == 2


def test_aligned_frame_fills_absent_customers_and_keeps_order():
    ids = pd.Index(["A", "B", "C"], name="customer_id", dtype="str")
    first = (
        pd.Index(["C", "A"], dtype="str"),
        {
            "count": np.array([2.0, np.nan]),
            "mean": np.array([1.5, 2.5]),
            "kind": pd.Categorical(["x", "y"]),
        },
    )
    empty = (pd.Index([], dtype="str"), {"other": np.array([])})
    frame = aligned_frame(ids, [first, empty], zero=frozenset({"count", "other"}))
    assert list(frame.columns) == ["count", "mean", "kind", "other"]
    assert frame["count"].tolist() == [0.0, 0.0, 2.0]  # NaN and absent both become 0
    np.testing.assert_array_equal(frame["mean"], [2.5, np.nan, 1.5])
    assert frame["kind"].tolist()[0] == "y" and pd.isna(frame["kind"].iloc[1])
    assert frame["kind"].dtype == pd.CategoricalDtype(["x", "y"])
    assert frame["other"].tolist() == [0.0, 0.0, 0.0]
    assert frame.index.equals(ids)


@pytest.mark.parametrize("sort", [False, True])
@pytest.mark.parametrize("dtype", ["str", "string", "object"])
def test_factorize_small_path_matches_pandas(sort, dtype):
    rng = np.random.default_rng(5)
    for n in (0, 1, 2, 7, SMALL):
        values = rng.choice(["b", "a", "é", "B", "aa", "", None], n).tolist()
        array = (
            np.array(values, dtype=object) if dtype == "object" else pd.array(values, dtype=dtype)
        )
        codes, uniques = factorize(array, sort=sort)
        want_codes, want_uniques = pd.factorize(array, sort=sort)
        np.testing.assert_array_equal(codes, want_codes)
        assert list(uniques) == list(want_uniques)


def test_factorize_large_input_is_pandas():
    array = pd.array(["b", "a", None] * SMALL, dtype="str")
    codes, uniques = factorize(array, sort=True)
    np.testing.assert_array_equal(codes, pd.factorize(array, sort=True)[0])
    assert list(uniques) == ["a", "b"]


def test_arrays_frame_equals_a_frame_from_a_dict_of_the_arrays():
    """Every kind of column validation and /v1/predict hand over: text, numbers, objects,
    wrapped NumPy values, dates with and without a time zone, nullable booleans and
    categoricals; the frame's values are its own (a change to a copy leaves it as it was)."""
    n = 3
    arrays = [
        pd.array(["a", "b", None], dtype="str"),
        np.array([1.0, np.nan, 3.0]),
        pd.array(pd.to_datetime(["2024-01-01", None, "2024-01-03"], utc=True)),
        np.array(["x", 1, None], dtype=object),
        pd.arrays.NumpyExtensionArray(np.array([1, 2, 3])),
        np.array(["2024-01-01", "NaT", "2024-01-02"], dtype="M8[s]"),
        pd.array([True, None, False], dtype="boolean"),
        pd.Categorical(["a", "b", "a"]),
        np.array([True, False, True]),
    ]
    names = [f"c{i}" for i in range(len(arrays))]
    got = arrays_frame(arrays, index=pd.RangeIndex(n), columns=column_labels(names))
    # pd.DataFrame infers text from a NumPy object array; wrapped, it stays object
    wrapped = [
        pd.arrays.NumpyExtensionArray(a) if isinstance(a, np.ndarray) and a.dtype == object else a
        for a in arrays
    ]
    want = pd.DataFrame(dict(zip(names, wrapped, strict=True)), index=pd.RangeIndex(n))
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got["c3"].dtype == object
    copy = got.copy()
    copy.iloc[0, 1] = 5.0
    assert got.iloc[0, 1] == 1.0


def test_column_labels_are_those_of_a_frame_from_a_dict():
    """Text labels become a text Index whatever Index they came in; 1 and True stay apart."""
    for names in (["customer_id", "amount"], [1, 2], [2, 5], [True, "x"], [("a", 1), ("b", 2)]):
        want = pd.DataFrame({k: [0] for k in names}).columns
        got = column_labels(names)
        pd.testing.assert_index_equal(got, want, exact=True)
        assert [type(v) for v in got] == [type(v) for v in names]
    assert column_labels(["a", "b"]) is column_labels(["a", "b"])  # built once
    assert column_labels([1]).dtype == "int64" and column_labels([True]).dtype == bool
