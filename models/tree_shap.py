"""LightGBM's SHAP values (``pred_contrib``) for many rows, from per-leaf tables.

Why: LightGBM's TreeSHAP costs about 5 us per tree and row (0.6 ms a customer for 127 trees
of 31 leaves, one core), which made it most of ``make score``. Two facts make it cheap:

- A tree's SHAP values for a row depend only on which way the row goes at each of the
  tree's splits (TreeSHAP follows the row where a feature is "present" and both branches
  where it is not; either way it reads only the split decisions). A scored population has
  far fewer distinct decision patterns per tree than rows, so each tree is evaluated once
  per pattern and the values spread back to the rows.
- Path-dependent TreeSHAP is, per leaf, the Shapley value of a product game: with ``U`` the
  distinct features on the leaf's path, ``z_j`` the share of the training rows the path keeps
  at its splits on ``j`` (``data_count`` of child over parent, multiplied over the splits)
  and ``o_j`` whether the row takes the path's side at all of them, the leaf adds
  ``v (o_i - z_i) sum_S w(|S|, |U|) prod_{j in S} o_j prod_{j not in S, j != i} z_j`` to
  feature ``i`` (``S`` over the subsets of ``U`` without ``i``, ``w`` the Shapley weights).
  That depends on the row only through the bits ``o``: each leaf gets a table of its
  ``2^|U| x |U|`` values once (Fast TreeSHAP's idea), and a pattern's values are one lookup
  per leaf.

Rows are put in states per feature once (the interval between the model's thresholds on it,
with zero and NaN apart; a category by its code), so a tree's pattern is a mixed-radix number
of its features' states. The decisions are LightGBM's rules (``Tree::NumericalDecision`` /
``CategoricalDecision``: missing values to the default side, NaN as zero where the split has no
missing type, a category by its integer code), and they are checked against LightGBM: the
leaf each row's pattern leads to must be the leaf ``pred_leaf`` gives, for every row, else
that tree's values come from LightGBM's ``pred_contrib`` for every row. A tree with a path of
more than :data:`MAX_TABLE_FEATURES` distinct features gets LightGBM's values per pattern.
The values equal one ``pred_contrib`` call's up to the order of floating-point additions
(about 1e-15 relative).
"""

from __future__ import annotations

import mmap
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from math import factorial
from typing import Any, cast

import lightgbm as lgb
import numpy as np
import pandas as pd

#: Shares the trees are dealt into (tree ``t`` to share ``t % SHARES``): this process
#: computes the first, a forked child process the second (the machine's 2 cores; threads
#: mostly took turns on the GIL: 0.62-0.76 s of CPU per second of wall time with 2 threads).
#: The values are summed per share, then across, so this fixes the order of the additions.
SHARES = 2
#: Below this many rows one ``pred_contrib`` call is cheaper than the tables.
MIN_ROWS = 2_000
#: A leaf with more distinct features on its path has too big a table (2^d x d values).
MAX_TABLE_FEATURES = 20
#: LightGBM's ``kZeroThreshold``: a value this close to zero is zero for a ``Zero`` split.
_ZERO = 1e-35
#: Largest pattern number kept as one int64 (a tree with more patterns is split in parts).
_MAX_CODE = 2**62


@dataclass
class _Tree:
    """One tree in arrays: per split (dump order) its feature, left and right child (a split's
    position, or ``-1 - leaf_index``); per leaf its value and path."""

    feature: np.ndarray
    left: np.ndarray
    right: np.ndarray
    nodes: list[dict[str, Any]]
    #: per leaf: (leaf value, [(feature, [(split, goes left), ...], z), ...]), leaf index order
    paths: list[tuple[float, list[tuple[int, list[tuple[int, bool]], float]]]]
    expected: float


def _tree(info: dict[str, Any]) -> _Tree:
    """Parse one ``dump_model`` tree; ``expected`` is LightGBM's ``Tree::ExpectedValue``."""
    nodes: list[dict[str, Any]] = []
    left: list[int] = []
    right: list[int] = []
    leaf_paths: dict[int, tuple[float, int, list[tuple[int, bool, float]]]] = {}

    def count(node: dict[str, Any]) -> int:
        return int(node["leaf_count"] if "leaf_index" in node else node["internal_count"])

    def visit(node: dict[str, Any], path: list[tuple[int, bool, float]]) -> int:
        if "leaf_index" in node:
            leaf = int(node["leaf_index"])
            leaf_paths[leaf] = (float(node["leaf_value"]), count(node), path)
            return -1 - leaf
        k = len(nodes)
        nodes.append(node)
        left.append(0)
        right.append(0)
        total = count(node)
        lo, hi = node["left_child"], node["right_child"]
        left[k] = visit(lo, [*path, (k, True, count(lo) / total)])
        right[k] = visit(hi, [*path, (k, False, count(hi) / total)])
        return k

    visit(info["tree_structure"], [])
    feature = np.array([int(n["split_feature"]) for n in nodes], dtype=np.int64)
    paths = []
    root = count(info["tree_structure"])
    expected = 0.0
    for leaf in range(len(leaf_paths)):
        value, n_leaf, path = leaf_paths[leaf]
        expected += (n_leaf / root) * value if nodes else value
        by_feature: dict[int, tuple[list[tuple[int, bool]], float]] = {}
        for k, goes_left, fraction in path:
            splits, z = by_feature.get(int(feature[k]), ([], 1.0))
            by_feature[int(feature[k])] = ([*splits, (k, goes_left)], z * fraction)
        paths.append((value, [(f, s, z) for f, (s, z) in by_feature.items()]))
    return _Tree(feature, np.array(left), np.array(right), nodes, paths, expected)


class _States:
    """Every row's state per feature (an int per row), and each split's decision per state.

    Numeric feature with sorted distinct thresholds ``T`` (K of them): a value's bin is
    ``searchsorted(T, value, 'left')`` (``value <= T[k]`` exactly when the bin is ``<= k``);
    state = bin, or ``K + 1 + bin`` for a value within ``kZeroThreshold`` of zero, or
    ``2 (K + 1)`` for NaN. Categorical feature: the position of the row's integer code among
    the split categories, ``len`` for any other code, NaN or negative value (always right).
    """

    def __init__(self, trees: list[_Tree], matrix: np.ndarray) -> None:
        numeric: dict[int, set[float]] = {}
        categories: dict[int, set[int]] = {}
        for tree in trees:
            for k, node in enumerate(tree.nodes):
                f = int(tree.feature[k])
                if node["decision_type"] == "==":
                    categories.setdefault(f, set()).update(_categories(node))
                else:
                    numeric.setdefault(f, set()).add(float(node["threshold"]))
        self.thresholds = {f: np.array(sorted(t)) for f, t in numeric.items()}
        self.categories = {f: np.array(sorted(c), dtype=np.int64) for f, c in categories.items()}
        self.state: dict[int, np.ndarray] = {}
        self.size: dict[int, int] = {}
        for f, th in self.thresholds.items():
            x = matrix[:, f]
            nan = np.isnan(x)
            state = np.searchsorted(th, np.where(nan, 0.0, x), side="left")
            zero = (x >= -_ZERO) & (x <= _ZERO)
            state = np.where(zero, state + len(th) + 1, state)
            self.state[f] = np.where(nan, 2 * (len(th) + 1), state).astype(np.int32)
            self.size[f] = 2 * (len(th) + 1) + 1
        for f, cats in self.categories.items():
            x = matrix[:, f]
            ok = ~np.isnan(x)
            code = np.where(ok, x, -1.0).astype(np.int64)  # C++ static_cast<int>: toward 0
            at = np.minimum(np.searchsorted(cats, code), len(cats) - 1)
            found = ok & (code >= 0) & (cats[at] == code)
            self.state[f] = np.where(found, at, len(cats)).astype(np.int32)
            self.size[f] = len(cats) + 1

    def goes_left(self, node: dict[str, Any], f: int) -> np.ndarray:
        """The split's decision (left or not) for each state of its feature ``f``."""
        if node["decision_type"] == "==":
            cats = self.categories[f]
            return np.append(np.isin(cats, _categories(node)), False)
        th = self.thresholds[f]
        k = int(np.searchsorted(th, float(node["threshold"])))
        bins = np.arange(len(th) + 1) <= k
        missing = node.get("missing_type", "None")
        default = bool(node.get("default_left", False))
        zero = np.full(len(th) + 1, default) if missing == "Zero" else bins
        at_zero = int(np.searchsorted(th, 0.0, side="left"))
        nan = default if missing in ("NaN", "Zero") else bool(bins[at_zero])
        return np.concatenate([bins, zero, [nan]])


def _categories(node: dict[str, Any]) -> list[int]:
    return [int(c) for c in str(node["threshold"]).split("||")]


def _weights(d: int) -> np.ndarray:
    """Shapley weights ``s! (d - 1 - s)! / d!`` for subsets of size ``s`` of ``d`` players."""
    return np.array([factorial(s) * factorial(d - 1 - s) / factorial(d) for s in range(d)])


def _leaf_values(value: float, z: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The leaf's SHAP values for patterns ``codes`` of its bits ``o`` (``o_j`` = bit ``j``;
    module docstring): shape (codes, d).

    With ``P(t) = prod_j (o_j ? z_j + t : z_j)``, the sum over subsets of the hot features
    is ``sum_s w(s, d) [t^s] P(t) / factor_i``: a cold ``i`` (``o_i = 0``) gets
    ``-v sum_s w_s [t^s] P`` (its factor ``z_i`` cancels ``0 - z_i``), a hot one
    ``v (1 - z_i) sum_s w_s [t^s] (P / (z_i + t))``, the quotient by synthetic division
    from the top (``z_i <= 1``: errors do not grow)."""
    d = len(z)
    hot = ((codes[:, None] >> np.arange(d)) & 1).astype(bool)  # (codes, d)
    poly = np.zeros((len(codes), d + 1))
    poly[:, 0] = 1.0
    for j in range(d):
        shifted = np.zeros_like(poly)
        shifted[:, 1:] = poly[:, :-1]
        poly = poly * z[j] + np.where(hot[:, j : j + 1], shifted, 0.0)
    weights = _weights(d)
    cold_sum = poly[:, :d] @ weights  # degree d only when every feature is hot
    quotient = np.empty((len(codes), d, d))  # (codes, i, degree)
    quotient[:, :, d - 1] = poly[:, d : d + 1]
    for m in range(d - 1, 0, -1):
        quotient[:, :, m - 1] = poly[:, m : m + 1] - z[None, :] * quotient[:, :, m]
    hot_sum = quotient @ weights  # (codes, i)
    out: np.ndarray = value * np.where(hot, (1.0 - z)[None, :] * hot_sum, -cold_sum[:, None])
    return out


def _patterns(
    tree: _Tree, states: _States, n: int
) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]] | None:
    """Distinct decision patterns of the tree: a representative row of each, each row's
    pattern (index into them), and per feature the split decisions by state; ``None`` when
    the patterns do not fit an int64."""
    decisions: dict[int, np.ndarray] = {}
    code = np.zeros(n, dtype=np.int64)
    radix = 1
    for f in np.unique(tree.feature):
        f = int(f)
        table = np.array(
            [states.goes_left(node, f) for k, node in enumerate(tree.nodes) if tree.feature[k] == f]
        )  # (splits on f, states of f)
        if len(table) > 56:  # the key below holds 7 bytes of decisions
            return None
        # states with the same decisions at every split on f are one local state
        key = np.packbits(table, axis=0, bitorder="little")  # (bytes, states)
        key = (key.astype(np.int64) << (8 * np.arange(len(key)))[:, None]).sum(axis=0)
        groups, local = np.unique(key, return_inverse=True)
        if radix * len(groups) >= _MAX_CODE:
            return None
        code += (local.astype(np.int64) * radix)[states.state[f]]
        radix *= len(groups)
        decisions[f] = table
    # distinct numbers by hashing, not sorting; any row of a pattern represents it
    inverse, distinct = pd.factorize(code)
    first = np.empty(len(distinct), dtype=np.intp)
    first[inverse] = np.arange(n)
    return first, inverse.astype(np.intp, copy=False), decisions


def _left_of(
    tree: _Tree, states: _States, decisions: dict[int, np.ndarray], rows: np.ndarray
) -> np.ndarray:
    """Each split's decision for ``rows``, shape (rows, splits) (a split's decisions
    contiguous)."""
    goes = np.empty((len(tree.nodes), len(rows)), dtype=bool)
    for f, table in decisions.items():
        at = np.flatnonzero(tree.feature == f)
        goes[at] = table[:, states.state[f][rows]]
    return goes.T


def _leaf_of(tree: _Tree, goes: np.ndarray) -> np.ndarray:
    """The leaf index the decisions lead each row to."""
    at = np.zeros(len(goes), dtype=np.int64)
    rows = np.arange(len(goes))
    for _ in range(len(tree.nodes)):
        inside = at >= 0
        if not inside.any():
            break
        k = np.maximum(at, 0)
        at = np.where(inside, np.where(goes[rows, k], tree.left[k], tree.right[k]), at)
    return -1 - at


def _table_values(tree: _Tree, goes: np.ndarray, used: np.ndarray) -> np.ndarray:
    """The tree's SHAP values for the rows of ``goes`` (their decisions), shape (``used``,
    rows): each leaf's bits built down the tree (a split on a feature already on the path
    clears its bit where the row goes the other way, a new feature gets the next bit), the
    leaf's values computed for the patterns present, and each row's values summed over the
    leaves in the order the tree is walked."""
    column = {int(f): c for c, f in enumerate(used)}
    rows = len(goes)
    out = np.zeros((len(used), rows))

    def visit(node: int, code: np.ndarray, features: list[int]) -> None:
        if node < 0:
            value, path = tree.paths[-1 - node]
            z = np.array([zf for _, _, zf in path])
            present = np.zeros(2 ** len(z), dtype=bool)
            present[code] = True
            pick = (np.cumsum(present) - 1)[code]
            values = _leaf_values(value, z, np.flatnonzero(present)).T  # (features, codes)
            for c, f in zip([column[f] for f in features], values, strict=True):
                out[c] += f[pick]
            return
        f = int(tree.feature[node])
        g = goes[:, node]
        if f in features:  # clear the bit where the row goes the other way
            keep = ~np.int32(1 << features.index(f))
            visit(int(tree.left[node]), np.where(g, code, code & keep), features)
            visit(int(tree.right[node]), np.where(g, code & keep, code), features)
        else:
            bit = np.int32(1 << len(features))
            visit(int(tree.left[node]), np.where(g, code | bit, code), [*features, f])
            visit(int(tree.right[node]), np.where(g, code, code | bit), [*features, f])

    # codes of at most MAX_TABLE_FEATURES bits
    visit(0, np.zeros(rows, dtype=np.int32), [])
    return out


def pred_contrib(booster: lgb.Booster, matrix: np.ndarray, num_iteration: int) -> np.ndarray:
    """``booster.predict(matrix, num_iteration=num_iteration, pred_contrib=True)`` for a
    dense float matrix (shape (rows, features + 1), the last column the expected value),
    each tree evaluated once per distinct decision pattern from per-leaf tables (module
    docstring)."""
    n = len(matrix)
    if n < MIN_ROWS or num_iteration <= 0:
        return cast(
            np.ndarray,
            booster.predict(matrix, num_iteration=num_iteration, pred_contrib=True),
        )
    trees = [_tree(t) for t in booster.dump_model(num_iteration=num_iteration)["tree_info"]]
    leaves = np.asarray(booster.predict(matrix, num_iteration=num_iteration, pred_leaf=True))
    leaves = np.ascontiguousarray(leaves.T)  # a tree's leaves contiguous
    states = _States(trees, matrix)

    def add(out: np.ndarray, t: int, spread: np.ndarray, lightgbm: _LightGBM) -> None:
        """Tree ``t``'s values added to ``out`` (shape (features + 1, rows)); ``spread``: a
        row's worth of room for a feature's values spread to the rows."""
        tree = trees[t]
        if not tree.nodes:
            return
        used = np.unique(tree.feature)
        found = tree_values(tree, states, leaves[t])
        if found is None:  # LightGBM's own values, every row
            out[used] += lightgbm(booster, matrix, t)[:, used].T
            return
        part, first, inverse = found
        if part is None:  # a path too long for tables: LightGBM's values per pattern
            part = lightgbm(booster, matrix[first], t)[:, used].T
        for c, f in enumerate(used):  # row by row in place: no (features, rows) temporary
            out[f] += np.take(part[c], inverse, out=spread)

    def share(k: int, out: np.ndarray, lightgbm: _LightGBM = _lightgbm) -> None:
        # by column: the rows of a column gathered at once
        spread = np.empty(n)
        for t in range(k, len(trees), SHARES):
            add(out, t, spread, lightgbm)

    # The many small NumPy calls hold the GIL, so threads would take turns: the second
    # share of the trees is computed in a forked process, into memory shared with it, while
    # this one computes the first. Each share adds into its own array, then the two are
    # added, whoever computed them: the same additions in the same order either way.
    shape = (matrix.shape[1] + 1, n)
    forked = _fork(lambda out: share(1, out, _no_lightgbm), shape)
    out = np.zeros(shape)
    try:
        share(0, out)
    except BaseException:
        forked(cancel=True)
        raise
    other = forked()
    if other is None:  # no fork, or the child could not finish: this process does it
        other = np.zeros(shape)
        share(1, other)
    out += other
    del other
    out[-1] += sum(tree.expected for tree in trees)
    return out.T


def tree_values(
    tree: _Tree, states: _States, leaves: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray] | None:
    """One tree's SHAP values per distinct pattern, shape (features it splits on, patterns),
    a representative row of each pattern and each row's pattern; the values are ``None``
    for a tree with a path of more than :data:`MAX_TABLE_FEATURES` features. ``None`` when
    the patterns do not lead every row to the leaf LightGBM puts it in (``leaves``)."""
    found = _patterns(tree, states, len(leaves))
    if found is None:
        return None
    first, inverse, decisions = found
    goes = _left_of(tree, states, decisions, first)
    if not np.array_equal(_leaf_of(tree, goes)[inverse], leaves):
        return None
    if max(len(f) for _, f in tree.paths) > MAX_TABLE_FEATURES:
        return None, first, inverse
    return _table_values(tree, goes, np.unique(tree.feature)), first, inverse


def _lightgbm(booster: lgb.Booster, rows: np.ndarray, t: int) -> np.ndarray:
    """LightGBM's own ``pred_contrib`` of tree ``t`` alone (expected value column dropped to
    zero: it is added from the parsed tree)."""
    values = np.asarray(
        booster.predict(rows, start_iteration=t, num_iteration=1, pred_contrib=True)
    )
    values[:, -1] = 0.0
    return values


_LightGBM = Callable[[lgb.Booster, np.ndarray, int], np.ndarray]
#: Exit code of a child that met a tree only LightGBM can compute.
_NEEDS_LIGHTGBM = 3


def _no_lightgbm(booster: lgb.Booster, rows: np.ndarray, t: int) -> np.ndarray:
    """In the forked child: LightGBM's OpenMP threads are not safe to use after a fork, so a
    tree that needs LightGBM ends the child, and the parent computes its share."""
    os._exit(_NEEDS_LIGHTGBM)


def _fork(work: Callable[[np.ndarray], None], shape: tuple[int, int]) -> Callable[..., Any]:
    """Run ``work(out)`` in a forked child process, ``out`` a zeroed float array of
    ``shape`` in memory shared with this process; returns a function that waits for the child
    and gives ``out``, or ``None`` when the child failed (or this system cannot fork), for the
    caller to do the work itself (``cancel=True``: end the child, for a caller that failed).
    The child only computes (no files, no logging, no LightGBM) and leaves with
    ``os._exit``, so nothing of this process runs twice."""
    if not hasattr(os, "fork"):
        return lambda cancel=False: None
    size = int(np.prod(shape)) * 8
    try:
        shared = mmap.mmap(-1, max(size, 1))  # anonymous, shared with the child, zeroed
        pid = os.fork()
    except OSError:
        return lambda cancel=False: None
    if pid == 0:  # the child
        code = 1
        try:
            work(np.frombuffer(shared, dtype=np.float64, count=size // 8).reshape(shape))
            code = 0
        finally:
            os._exit(code)

    def wait(cancel: bool = False) -> np.ndarray | None:
        if cancel:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            shared.close()
            return None
        return np.frombuffer(shared, dtype=np.float64, count=size // 8).reshape(shape)

    return wait
