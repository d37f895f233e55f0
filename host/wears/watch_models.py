"""The model kinds the watch runs, as training candidates, and their on-watch predictions.

A candidate is scored the way the watch will run it: an ExtraTrees through
`wears.export.quantize_forest` (the tree runtime, bit for bit), an MLP through
`wears.mlp.quantize_mlp` (the int8 runtime, bit for bit). `WatchMLP` is the MLP candidate: a
scikit-learn estimator fitted on the watch's int8 inputs (`wears.mlp.input_scaling`), so the
float network and the int8 one differ only in the quantization of weights and activations, with
class-balanced sample weights when asked.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(-5000, 5000, size=(300, 3))
    >>> y = (X[:, 0] + X[:, 1] > 0).astype(int)
    >>> m = WatchMLP(hidden=(8,), alpha=0.1).fit(X, y)
    >>> bool(np.mean(on_watch(m, X, feature_spec=8).predict(X) == y) > 0.9)
    True
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.utils.class_weight import compute_sample_weight

from .export import QuantizedForest, quantize_forest
from .mlp import INPUT_DIVISOR, FloatMLP, QuantizedMLP, input_scaling, quantize_inputs, quantize_mlp

ON_DEVICE_KINDS = ("extratrees", "mlp")


class WatchMLP(ClassifierMixin, BaseEstimator):
    """An MLP on the watch's int8 inputs (ReLU hidden layers), ready for `wears.mlp.quantize_mlp`.

    Parameters:
        hidden: hidden layer widths.
        alpha: L2 weight penalty (what keeps a small net general; no early stopping, whose
            validation split would be random windows, neighbours of the training ones).
        max_iter: optimiser iterations.
        class_weight: "balanced" weighs each class alike; None leaves the counts.
        random_state: seed.

    Attributes:
        float_model_: the fitted `wears.mlp.FloatMLP` (input offsets / shifts and the network).
        classes_: the labels.
    """

    def __init__(self, hidden: tuple[int, ...] = (16,), alpha: float = 1.0, max_iter: int = 500,
                 class_weight: str | None = "balanced", random_state: int = 0) -> None:
        self.hidden = hidden
        self.alpha = alpha
        self.max_iter = max_iter
        self.class_weight = class_weight
        self.random_state = random_state

    def fit(self, X, y) -> "WatchMLP":
        X = np.asarray(X, dtype=np.int64)
        offsets, shifts = input_scaling(X)
        net = MLPClassifier(tuple(self.hidden), activation="relu", alpha=self.alpha, max_iter=self.max_iter,
                            random_state=self.random_state)
        weight = compute_sample_weight(self.class_weight, y) if self.class_weight else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            net.fit(quantize_inputs(X, offsets, shifts) / INPUT_DIVISOR, y, sample_weight=weight)
        self.float_model_ = FloatMLP(offsets, shifts, net)
        self.classes_ = net.classes_
        return self

    def predict(self, X) -> np.ndarray:
        return self.float_model_.predict(X)

    def predict_proba(self, X) -> np.ndarray:
        return self.float_model_.predict_proba(X)


def kind_of(model) -> str:
    """"extratrees", "mlp" (both run on the watch), or the estimator's class name."""
    if isinstance(model, ExtraTreesClassifier):
        return "extratrees"
    if isinstance(model, WatchMLP):
        return "mlp"
    return type(model).__name__


def on_watch(model, X_train: np.ndarray, feature_spec: int) -> QuantizedForest | QuantizedMLP | None:
    """The watch's integer form of a fitted candidate (quantized on its training features), or
    None for a kind the watch does not run. Raises ValueError when it cannot be a blob at all."""
    if isinstance(model, ExtraTreesClassifier):
        return quantize_forest(model, X_train, feature_spec)
    if isinstance(model, WatchMLP):
        return quantize_mlp(model.float_model_, X_train, feature_spec)
    return None


def watch_predict(quantized: QuantizedForest | QuantizedMLP | None, X: np.ndarray) -> np.ndarray:
    """The labels the watch gives for integer features X (`quantized` from `on_watch`)."""
    if quantized is None:
        raise ValueError("a model kind the watch does not run has no watch predictions")
    return quantized.classes_[quantized.predict(X)]
