"""Tree ensembles -> the watch's quantized, signed model blob (docs/model-blob.md).

`quantize_forest` turns a fitted scikit-learn ExtraTrees or RandomForest classifier, trained on
the watch's int32 fixed-point features, into a `QuantizedForest`: a per-feature offset and
right shift mapping each feature to int16, int16 thresholds, u8 leaf probabilities. Its
`predict` and `predict_proba_u8` are the watch runtime (`watch.model`) in numpy, bit for bit.

Example:
    >>> import numpy as np
    >>> from sklearn.ensemble import ExtraTreesClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(-5000, 5000, size=(300, 3))
    >>> y = (X[:, 0] + X[:, 1] > 0).astype(int)
    >>> forest = ExtraTreesClassifier(n_estimators=5, max_depth=4, random_state=0).fit(X, y)
    >>> qf = quantize_forest(forest, X, feature_spec=1)
    >>> bool(np.mean(forest.classes_[qf.predict(X)] == forest.predict(X)) > 0.97)
    True
    >>> data = qf.to_blob(key=bytes(32))
    >>> len(data) == qf.size_bytes
    True
"""

from __future__ import annotations

import struct
from typing import Protocol, cast

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.utils.validation import check_is_fitted

from watch import blob as B
from watch import protocol as P

from .blob import BlobModel, read_blob, window_settings
from .errors import ModelBlobError, WearsError

_TREE_LEAF = -1  # sklearn.tree._tree.TREE_LEAF: the child index of a leaf


class _Classifier(Protocol):
    """What distilling a trained model into an MLP needs of it."""

    def predict(self, X: np.ndarray) -> np.ndarray: ...


class QuantizedForest(BlobModel):
    """A tree ensemble in the watch's integer form, and the watch's runtime emulated in numpy.

    Nodes of all trees are in one table, each tree in depth-first order (left child = the next
    node). Inner nodes send a row left when its quantized feature q <= threshold; a leaf has
    feature `LEAF` (255) and its `right_` entry is its row of `leaf_proba_`.

    Parameters:
        feature_spec: id of the feature set the model expects (u16).
        classes: the label each class index stands for (what sklearn calls `classes_`).
        offsets, shifts: per-feature int32 offset and right shift of the quantization.
        roots: index of each tree's first node.
        feature, threshold, right: per node; threshold is the signed int16 t.
        leaf_proba: u8 class probabilities (x/255), one row per distinct leaf.
        window: (window_s, step_s, baseline_windows) the watch computes the features with.

    Attributes:
        classes_, offsets_, shifts_, roots_, feature_, threshold_, right_, leaf_proba_: numpy
        arrays of the above.

    Example:
        >>> qf = QuantizedForest(feature_spec=1, classes=[0, 1], offsets=[0], shifts=[0], roots=[0],
        ...                      feature=[0, 255, 255], threshold=[10, 0, 0], right=[2, 0, 1],
        ...                      leaf_proba=[[255, 0], [0, 255]])
        >>> qf.predict([[10], [11]]).tolist()
        [0, 1]
    """

    LEAF = B.LEAF
    KIND = B.KIND_TREES
    TOO_LARGE_HINT = ": use fewer or shallower trees"

    def __init__(self, *, feature_spec: int, classes, offsets, shifts, roots, feature, threshold, right,
                 leaf_proba, window=(0, 0, 0)) -> None:
        self.feature_spec = int(feature_spec)
        self.window = window_settings(window)
        self.classes_ = np.asarray(classes)
        self.offsets_ = np.asarray(offsets, dtype=np.int64)
        self.shifts_ = np.asarray(shifts, dtype=np.int64)
        self.roots_ = np.asarray(roots, dtype=np.int64)
        self.feature_ = np.asarray(feature, dtype=np.int64)
        self.threshold_ = np.asarray(threshold, dtype=np.int64)
        self.right_ = np.asarray(right, dtype=np.int64)
        self.leaf_proba_ = np.asarray(leaf_proba, dtype=np.int64).reshape(-1, len(self.classes_))
        self._check()

    def _check(self) -> None:
        # What the watch's loader insists on (watch.loader), so every blob built
        # here loads there.
        nf, nn, nl = self.n_features, self.n_nodes, self.n_leaves
        if not 1 <= nf <= B.MAX_FEATURES or len(self.shifts_) != nf:
            raise ValueError(f"need 1..{B.MAX_FEATURES} features, with one offset and one shift each")
        if not 1 <= self.n_classes <= 255 or not 0 <= self.feature_spec <= 0xFFFF:
            raise ValueError("n_classes must be 1..255 and feature_spec a u16")
        if np.any((self.offsets_ < B.X_MIN) | (self.offsets_ > B.X_MAX)) or np.any(
                (self.shifts_ < 0) | (self.shifts_ > B.MAX_SHIFT)):
            raise ValueError(f"offsets must lie in [{B.X_MIN}, {B.X_MAX}], shifts in [0, {B.MAX_SHIFT}]")
        if not (1 <= self.n_trees and 1 <= nn <= B.MAX_NODES and 1 <= nl <= B.MAX_NODES):
            raise ValueError(f"need at least one tree and 1..{B.MAX_NODES} nodes and leaves")
        if len(self.threshold_) != nn or len(self.right_) != nn or np.any(self.roots_ < 0) or np.any(self.roots_ >= nn):
            raise ValueError("feature, threshold and right need one entry per node; roots must be nodes")
        if np.any((self.leaf_proba_ < 0) | (self.leaf_proba_ > 255)):
            raise ValueError("leaf probabilities are u8")
        leaf = self.feature_ == B.LEAF
        idx = np.arange(nn)
        inner_ok = (self.feature_ >= 0) & (self.feature_ < nf) & (idx + 1 < nn) & (self.right_ > idx) & (
            self.right_ < nn) & (self.threshold_ >= B.Q_MIN) & (self.threshold_ <= B.Q_MAX)
        leaf_ok = (self.right_ >= 0) & (self.right_ < nl)
        if not np.all(np.where(leaf, leaf_ok, inner_ok)):
            raise ValueError("a node points outside the tables, backwards, or has a threshold outside int16")
        size = B.trees_payload_size(self.n_trees, self.n_inner, nl, self.n_classes)
        if self.n_trees > B.MAX_TREES or size > B.MAX_TREES_PAYLOAD:
            raise ValueError(f"{self.n_trees} trees in a {size}-byte payload: the watch runs at most "
                             f"{B.MAX_TREES} trees in {B.MAX_TREES_PAYLOAD} bytes")

    @property
    def n_trees(self) -> int:
        return len(self.roots_)

    @property
    def n_nodes(self) -> int:
        return len(self.feature_)

    @property
    def n_inner(self) -> int:
        return int(np.sum(self.feature_ != B.LEAF))

    @property
    def n_leaves(self) -> int:
        return len(self.leaf_proba_)

    def quantize(self, X_int) -> np.ndarray:
        """The int16 values q the watch compares for integer features `X_int` (n, n_features)."""
        X = _as_int(X_int, "X_int", self.n_features)
        X = np.clip(X, B.X_MIN, B.X_MAX)
        return np.clip((X - self.offsets_) >> self.shifts_, B.Q_MIN, B.Q_MAX)

    def vote(self, X_int) -> np.ndarray:
        """Per row and class, the sum over trees of the u8 leaf probabilities (int64)."""
        q = self.quantize(X_int)
        rows = np.arange(len(q))
        total = np.zeros((len(q), self.n_classes), dtype=np.int64)
        for root in self.roots_:
            node = np.full(len(q), root)
            inner = self.feature_[node] != B.LEAF
            while inner.any():
                at = node[inner]
                left = q[rows[inner], self.feature_[at]] <= self.threshold_[at]
                node[inner] = np.where(left, at + 1, self.right_[at])
                inner = self.feature_[node] != B.LEAF
            total += self.leaf_proba_[self.right_[node]]
        return total

    def predict(self, X_int) -> np.ndarray:
        """The watch's label for each row: the class index (into `classes_`) with the largest
        vote, the lowest index on ties."""
        return np.argmax(self.vote(X_int), axis=1)

    def predict_proba_u8(self, X_int) -> np.ndarray:
        """The watch's u8 probabilities (x/255): the mean vote rounded half up, (n, n_classes)."""
        return ((self.vote(X_int) + self.n_trees // 2) // self.n_trees).astype(np.uint8)

    @property
    def payload(self) -> bytes:
        """The version-2 tree payload of the blob (docs/model-blob.md): counts, leaf rows,
        roots, inner nodes, with byte-offset references (before the first node: a leaf row)."""
        nc, nl, nt = self.n_classes, self.n_leaves, self.n_trees
        row = B.leaf_row_size(nc)
        inner = self.feature_ != B.LEAF
        index = np.cumsum(inner) - 1
        nodes = B.TREES_HEADER_SIZE + nl * row + 2 * nt
        ref = np.where(inner, nodes + B.NODE_SIZE * index, B.TREES_HEADER_SIZE + self.right_ * row)
        at = np.flatnonzero(inner)
        table = np.stack([self.feature_[at], self.threshold_[at] + B.BIAS, ref[np.minimum(at + 1, self.n_nodes - 1)],
                          ref[self.right_[at]]], axis=1)
        leaves = np.zeros((nl, row // 2), dtype=np.int64)
        leaves[:, :nc] = self.leaf_proba_
        return b"".join([
            struct.pack(B.TREES_HEADER, nt, len(at), nl, 0),
            leaves.astype("<u2").tobytes(),
            ref[self.roots_].astype("<u2").tobytes(),
            table.astype("<u2").tobytes(),
        ])

    @classmethod
    def from_blob(cls, data: bytes, key: bytes | None = None, classes=None) -> QuantizedForest:
        """The forest in a tree-ensemble blob of either format version (checked by
        `read_blob`, with `key` if given)."""
        info = read_blob(data, key)
        if info.kind != B.KIND_TREES:
            raise ModelBlobError(f"{info.kind_name}, not a tree ensemble", P.E_UNSUPPORTED_KIND)
        start = info.payload_offset + B.TREES_HEADER_SIZE
        parse = _payload_v2 if info.version >= 2 else _payload_v1
        try:
            roots, feature, threshold, right, leaves = parse(data, start, info)
            return cls(feature_spec=info.feature_spec,
                       classes=np.arange(info.n_classes) if classes is None else classes,
                       offsets=info.offsets, shifts=info.shifts, roots=roots, feature=feature, threshold=threshold,
                       right=right, leaf_proba=leaves, window=(info.window_s, info.step_s, info.baseline_windows))
        except (ValueError, IndexError) as e:
            raise ModelBlobError(str(e), P.E_UNSUPPORTED_KIND) from e

    def for_features(self, names, board_names, feature_spec: int) -> QuantizedForest:
        """The same forest for a watch computing `board_names` (feature set `feature_spec`)
        instead of `names`: every feature the forest has moves to its place there, the others
        get offset 0 and shift 0 and are never split on. For a model trained without a
        gyroscope (the E4) running on a board that has one.

        Example:
            >>> qf = QuantizedForest(feature_spec=8, classes=[0, 1], offsets=[7], shifts=[1], roots=[0],
            ...                      feature=[0, 255, 255], threshold=[3, 0, 0], right=[2, 0, 1],
            ...                      leaf_proba=[[255, 0], [0, 255]])
            >>> wide = qf.for_features(["a"], ["a", "g"], 7)
            >>> wide.offsets_.tolist(), wide.predict([[14, 99], [15, -5]]).tolist()
            ([7, 0], [0, 1])
        """
        names, board_names = list(names), list(board_names)
        missing = [n for n in names if n not in board_names]
        if missing or len(names) != self.n_features:
            raise ValueError(f"the board does not compute {missing or names}")
        where = np.array([board_names.index(n) for n in names])
        offsets = np.zeros(len(board_names), dtype=np.int64)
        shifts = np.zeros(len(board_names), dtype=np.int64)
        offsets[where], shifts[where] = self.offsets_, self.shifts_
        inner = self.feature_ != B.LEAF
        feature = np.where(inner, where[np.where(inner, self.feature_, 0)], B.LEAF)
        return QuantizedForest(feature_spec=feature_spec, classes=self.classes_, offsets=offsets, shifts=shifts,
                               roots=self.roots_, feature=feature, threshold=self.threshold_, right=self.right_,
                               leaf_proba=self.leaf_proba_, window=self.window)

    def __repr__(self) -> str:
        return (f"QuantizedForest(feature_spec={self.feature_spec}, n_features={self.n_features}, "
                f"n_classes={self.n_classes}, n_trees={self.n_trees}, n_nodes={self.n_nodes}, "
                f"n_leaves={self.n_leaves}, size_bytes={self.size_bytes})")


def _payload_v1(data: bytes, at: int, info) -> tuple:
    # roots, feature, threshold (signed), right, leaf rows of a version-1 payload.
    out = []
    for dtype, count in (("<u2", info.n_trees), ("u1", info.n_nodes), ("<u2", info.n_nodes),
                         ("<u2", info.n_nodes), ("u1", info.n_leaves * info.n_classes)):
        out.append(np.frombuffer(data, dtype=dtype, count=count, offset=at).astype(np.int64))
        at += out[-1].size * np.dtype(dtype).itemsize
    out[2] = out[2] - B.BIAS
    return tuple(out)


def _payload_v2(data: bytes, at: int, info) -> tuple:
    # The version-2 payload back in version-1 form: each tree's nodes depth first from its
    # root reference (left child next), leaves as rows.
    nc, nl, nt, ni = info.n_classes, info.n_leaves, info.n_trees, info.n_nodes
    start = at - B.TREES_HEADER_SIZE
    row = B.leaf_row_size(nc)
    words = np.frombuffer(data, dtype="<u2", count=info.payload_length // 2, offset=start).astype(np.int64)
    leaves = words[4:4 + nl * row // 2].reshape(nl, row // 2)[:, :nc]
    roots_at = (B.TREES_HEADER_SIZE + nl * row) // 2
    feature, threshold, right, roots = [], [], [], []

    def emit(ref: int, parent: int) -> int:
        # Appends the subtree at `ref`, returns its index; refs must point forward.
        index = len(feature)
        if ref < 2 * (roots_at + nt):
            offset = ref - B.TREES_HEADER_SIZE
            if offset % row or not 0 <= offset < nl * row:
                raise ValueError(f"leaf reference {ref:#x} is not a leaf row")
            feature.append(B.LEAF)
            threshold.append(0)
            right.append(offset // row)
            return index
        k = ref // 2
        if ref <= parent or (ref - 2 * roots_at - 2 * nt) % B.NODE_SIZE or k + 3 >= len(words):
            raise ValueError(f"node reference {ref} points backwards or between nodes")
        feature.append(int(words[k]))
        threshold.append(int(words[k + 1]) - B.BIAS)
        right.append(0)
        emit(int(words[k + 2]), ref)
        right[index] = emit(int(words[k + 3]), ref)
        return index

    for t in range(nt):
        roots.append(emit(int(words[roots_at + t]), 2 * (roots_at + nt) - 1))
    if len(leaves) != nl or ni * B.NODE_SIZE + 2 * (roots_at + nt) != info.payload_length:
        raise ValueError("tree payload counts do not add up")
    return roots, feature, threshold, right, leaves


def quantize_forest(model: ExtraTreesClassifier | RandomForestClassifier, X_train: np.ndarray,
                    feature_spec: int, window=(0, 0, 0)) -> QuantizedForest:
    """The watch's integer form of a fitted forest.

    Each feature gets the offset at the middle of its training range and the smallest right
    shift that fits the range into int16. A threshold `x <= thr` becomes `q <= t` with t chosen
    so the integer x where the decision flips is as close as the shift allows to floor(thr)
    (exactly there for shift 0). Leaf class fractions become u8 summing to 255 (largest
    remainder); equal leaves share one row.

    Parameters:
        model: a fitted single-output ExtraTreesClassifier or RandomForestClassifier.
        X_train: the integer (fixed-point) features it was trained on, (n, n_features); they
            set the quantization and must lie in [X_MIN, X_MAX] of watch.blob.
        feature_spec: id of the feature set (u16) the watch must compute to run the model.
        window: (window_s, step_s, baseline_windows) the watch computes those features with.

    Returns:
        QuantizedForest whose class index i stands for `model.classes_[i]`.

    Example:
        >>> import numpy as np
        >>> from sklearn.ensemble import RandomForestClassifier
        >>> X = np.array([[0], [1], [10], [11]])
        >>> forest = RandomForestClassifier(n_estimators=1, bootstrap=False, random_state=0)
        >>> qf = quantize_forest(forest.fit(X, [0, 0, 1, 1]), X, feature_spec=7)
        >>> qf.offsets_.tolist(), int(qf.threshold_[0]), qf.predict([[5], [6]]).tolist()
        ([5], 0, [0, 1])
    """
    if not isinstance(model, (ExtraTreesClassifier, RandomForestClassifier)):
        raise TypeError(f"expected ExtraTreesClassifier or RandomForestClassifier, got {type(model).__name__}")
    check_is_fitted(model)
    if model.n_outputs_ != 1:
        raise ValueError("the watch runs single-output classifiers only")
    # scikit-learn sets n_features_in_ (documented) in fit through setattr: no declaration pyright sees.
    X = _as_int(X_train, "X_train", model.n_features_in_)  # pyright: ignore[reportAttributeAccessIssue]
    if len(X) == 0 or X.min() < B.X_MIN or X.max() > B.X_MAX:
        raise ValueError(f"X_train must be non-empty and lie in [{B.X_MIN}, {B.X_MAX}] (watch.blob X_MIN, X_MAX)")
    offsets, shifts = _scaling(X)
    leaf_rows: dict[bytes, int] = {}
    roots, features, thresholds, rights = [], [], [], []
    base = 0
    for estimator in model.estimators_:
        tree = estimator.tree_
        order = _preorder(tree.children_left, tree.children_right)
        new_index = np.empty(tree.node_count, dtype=np.int64)
        new_index[order] = np.arange(len(order)) + base
        is_leaf = tree.children_left[order] == _TREE_LEAF
        f = np.where(is_leaf, 0, tree.feature[order])
        t = _quantize_thresholds(tree.threshold[order], offsets[f], shifts[f])
        proba = _proba_u8(tree.value[order[is_leaf], 0, :])
        leaf_row = [leaf_rows.setdefault(row.tobytes(), len(leaf_rows)) for row in proba]
        right = np.zeros(len(order), dtype=np.int64)
        right[is_leaf] = leaf_row
        right[~is_leaf] = new_index[tree.children_right[order[~is_leaf]]]
        roots.append(base)
        features.append(np.where(is_leaf, B.LEAF, f))
        thresholds.append(np.where(is_leaf, 0, t))
        rights.append(right)
        base += len(order)
    if base > B.MAX_NODES or len(leaf_rows) > B.MAX_NODES:
        raise ValueError(f"{base} nodes and {len(leaf_rows)} distinct leaves: the blob holds at most {B.MAX_NODES}")
    leaf_proba = np.frombuffer(b"".join(leaf_rows), dtype=np.uint8).reshape(len(leaf_rows), -1)
    return QuantizedForest(feature_spec=feature_spec, classes=model.classes_, offsets=offsets, shifts=shifts,
                           roots=roots, feature=np.concatenate(features), threshold=np.concatenate(thresholds),
                           right=np.concatenate(rights), leaf_proba=leaf_proba, window=window)


def export_blob(trained, key: bytes, max_bytes: int | None = B.MAX_BYTES) -> tuple[bytes, dict]:
    """Quantize and sign a trained model in one step: (blob, info) for `wears export`.

    Parameters:
        trained: anything with `model` (a fitted forest), `X_train` (its integer features) and
            `feature_spec`, such as `wears.train.TrainedModel`.
        key: the signing key of the watch that will run it.
        max_bytes: the largest blob the watch accepts; None lifts the limit.

    Returns:
        The blob, and a JSON-ready dict: model_id, size_bytes, feature_spec, n_features,
        n_classes, n_trees, n_nodes, n_leaves, and train_agreement (the fraction of training
        rows on which the watch's label equals scikit-learn's).

    Example:
        >>> from types import SimpleNamespace
        >>> from sklearn.ensemble import ExtraTreesClassifier
        >>> X = np.arange(40).reshape(20, 2)
        >>> forest = ExtraTreesClassifier(n_estimators=3, max_depth=3, random_state=0).fit(X, X[:, 0] > 19)
        >>> data, info = export_blob(SimpleNamespace(model=forest, X_train=X, feature_spec=2), bytes(32))
        >>> info["size_bytes"] == len(data), info["train_agreement"]
        (True, 1.0)
    """
    qf = quantize_forest(trained.model, trained.X_train, trained.feature_spec, window_of(trained))
    data = qf.to_blob(key, max_bytes)
    X = np.asarray(trained.X_train)
    agreement = float(np.mean(qf.classes_[qf.predict(X)] == trained.model.predict(X)))
    info = {"model_id": qf.model_id, "size_bytes": len(data), "feature_spec": qf.feature_spec,
            "n_features": qf.n_features, "n_classes": qf.n_classes, "n_trees": qf.n_trees, "n_nodes": qf.n_nodes,
            "n_leaves": qf.n_leaves, **window_info(qf.window), "train_agreement": round(agreement, 4)}
    return data, info


def window_of(trained) -> tuple[int, int, int]:
    """(window_s, step_s, baseline_windows) of a trained model (`wears.train.TrainedModel`):
    its recipe's window grid and, for a model on baseline-subtracted features, how many calm
    windows the baseline averages (0 otherwise); zeros for what it does not say."""
    normalise = getattr(trained, "normalise", None)
    return (int(getattr(trained, "window_s", 0) or 0), int(getattr(trained, "step_s", 0) or 0),
            int(normalise["windows"]) if normalise else 0)


def window_info(window) -> dict:
    """The window settings as `wears export` reports them."""
    return dict(zip(("window_s", "step_s", "baseline_windows"), (int(v) for v in window)))


def _as_int(X, name: str, n_features: int) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ValueError(f"{name} must be (n_samples, {n_features}), got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.integer):
        if not np.all(np.isfinite(X)) or np.any(X != np.round(X)):
            raise ValueError(f"{name} must hold the watch's integer (fixed-point) feature values")
    return X.astype(np.int64)


def _scaling(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Offset at the middle of the training range, then the smallest shift fitting it in int16:
    # the finest resolution, with equal headroom on both sides for values beyond the range.
    lo, hi = X.min(axis=0), X.max(axis=0)
    offsets = (lo + hi) // 2
    shifts = np.zeros_like(offsets)
    while True:
        wide = ((hi - offsets) >> shifts > B.Q_MAX) | ((lo - offsets) >> shifts < B.Q_MIN)
        if not wide.any():
            return offsets, shifts
        shifts[wide] += 1


def _quantize_thresholds(threshold: np.ndarray, offset: np.ndarray, shift: np.ndarray) -> np.ndarray:
    # For integer x, sklearn's `x <= thr` is `x <= X` with X = floor(thr). The watch's
    # `((x - offset) >> shift) <= t` is `x <= offset + (t + 1) * 2**shift - 1`; pick t + 1 as
    # (X - offset + 1) / 2**shift rounded half up, which is exact for shift 0.
    X = np.floor(np.clip(threshold, B.X_MIN - 1, B.X_MAX)).astype(np.int64)
    half = (np.int64(1) << shift) >> 1
    t = ((X - offset + 1 + half) >> shift) - 1
    return np.clip(t, B.Q_MIN, B.Q_MAX)


def _proba_u8(value: np.ndarray) -> np.ndarray:
    # Class fractions to u8 rows summing to 255: floor, then the leftover units to the largest
    # remainders (the lowest class first among equal remainders).
    total = value.sum(axis=1, keepdims=True)
    frac = np.divide(value, total, out=np.full_like(value, 1.0 / value.shape[1], dtype=float), where=total > 0)
    scaled = frac * 255
    base = np.floor(scaled + 1e-9).astype(np.int64)
    left = 255 - base.sum(axis=1, keepdims=True)
    rank = np.argsort(np.argsort(-(scaled - base), axis=1, kind="stable"), axis=1, kind="stable")
    return (base + (rank < left)).astype(np.uint8)


def _preorder(children_left: np.ndarray, children_right: np.ndarray) -> np.ndarray:
    # sklearn's depth-first builder already numbers nodes this way; the best-first builder
    # (max_leaf_nodes) does not, so the order is always rebuilt.
    order, stack = [], [0]
    while stack:
        node = stack.pop()
        order.append(node)
        if children_left[node] != _TREE_LEAF:
            stack.append(children_right[node])
            stack.append(children_left[node])
    return np.asarray(order, dtype=np.int64)


def export_model(model_path, key_path, output, *, formats=None, kind: str = "trees", board: str | None = None) -> dict:
    """`wears export`: the signed blob, ONNX / TFLite files and a model card next to `output`.

    Parameters:
        model_path: a `wears train` model (wears.train.TrainedModel).
        key_path: the watch key file.
        output: the blob's path; `.onnx`, `.tflite`, `.card.md`, `.card.json` go next to it.
        formats: any of "blob", "onnx", "tflite" (default: blob and onnx, and tflite for an MLP).
        kind: "trees" (the trained forest) or "mlp" (an int8 MLP 12-16-2 on the same windows).
        board: a board profile whose `model_budget_bytes` the blob must fit.

    Returns:
        A JSON-ready dict: what `export_blob` reports, plus the files written.
    """
    from pathlib import Path

    from .blob import load_key
    from .model_card import write_card
    from .paths import board_profile
    from .train import CLASS_NAMES, TrainedModel

    trained = TrainedModel.load(model_path)
    key = load_key(key_path)
    profile = board_profile(board) if board else None
    max_bytes = profile.get("model_budget_bytes", B.MAX_BYTES) if profile else B.MAX_BYTES
    formats = set(formats or (["blob", "onnx"] + (["tflite"] if kind == "mlp" else [])))
    out = Path(output)
    X = np.asarray(trained.X_train)
    written = {}
    if kind == "mlp":
        from .mlp import fit_mlp, quantize_mlp
        from .watch_models import WatchMLP

        if isinstance(trained.model, WatchMLP):  # `wears train` chose and evaluated this int8 MLP (kind "mlp")
            float_model = trained.model.float_model_
        else:
            y = getattr(trained, "y_train", None)
            if y is None:  # older models keep no labels: distil the forest
                y = cast(_Classifier, trained.model).predict(X)  # TrainedModel.model is typed object
            float_model = fit_mlp(X, y, hidden=(16,))
        qm = quantize_mlp(float_model, X, trained.feature_spec, window_of(trained))
        data = qm.to_blob(key, max_bytes)
        agreement = float(np.mean(qm.classes_[qm.predict(X)] == float_model.predict(X)))
        info = {"model_id": qm.model_id, "size_bytes": len(data), "feature_spec": qm.feature_spec,
                "n_features": qm.n_features, "n_classes": qm.n_classes, "shape": list(qm.shape),
                **window_info(qm.window), "train_agreement": round(agreement, 4)}
        model, onnx_model, onnx_X = qm, float_model.model_, float_model.network_input(X)
        if "tflite" in formats:
            from .tflite_export import to_tflite

            written["tflite"] = out.with_suffix(".tflite")
            written["tflite"].write_bytes(to_tflite(qm))
    else:
        forest = trained.model
        if not isinstance(forest, (ExtraTreesClassifier, RandomForestClassifier)):
            raise WearsError(f"{model_path} holds a {type(forest).__name__}, which the watch does not run: "
                             "only a forest (--kind trees) or an int8 MLP (--kind mlp)")
        data, info = export_blob(trained, key, max_bytes)
        model = quantize_forest(forest, X, trained.feature_spec, window_of(trained))
        onnx_model, onnx_X = forest, X
        if "tflite" in formats:
            raise ModelBlobError("TFLite export is for the int8 MLP (--kind mlp); a forest has no TFLite form here")
    if "blob" in formats:
        written["blob"] = out
        out.write_bytes(data)
    if "onnx" in formats:
        from .onnx_export import to_onnx

        onnx_bytes, onnx_agreement = to_onnx(onnx_model, onnx_X)
        written["onnx"] = out.with_suffix(".onnx")
        written["onnx"].write_bytes(onnx_bytes)
        info["onnx_agreement"] = onnx_agreement
        info["onnx_bytes"] = len(onnx_bytes)
    report = trained.report
    evaluation = None
    trained_kind = {"extratrees": "trees", "mlp": "mlp"}.get(getattr(trained, "kind", "extratrees"))
    if "macro_f1" in report and kind == trained_kind:  # the card's figures are of the kind `wears train` evaluated
        quantized = report.get("quantized", {})
        evaluation = {"protocol": report["protocol"], "n_windows": report["n_windows"],
                      "class_counts": report.get("class_counts", {}), "accuracy_float": report["accuracy"],
                      "accuracy_quantized": quantized.get("accuracy"), "macro_f1_float": report["macro_f1"],
                      "macro_f1_quantized": quantized.get("macro_f1"), "agreement": info["train_agreement"],
                      "agreement_on": "training windows", "per_participant": {}}
    card = write_card(out, data, model, evaluation=evaluation, feature_names=list(trained.feature_names),
                      board=profile, data=f"study data, digest {report.get('data_sha256', '?')}, participants "
                      f"{', '.join(report.get('participants', []))}", recipe=f"wears export --kind {kind}",
                      class_names=list(CLASS_NAMES))
    info["files"] = {k: str(v) for k, v in written.items()} | {"card": str(card)}
    return info
