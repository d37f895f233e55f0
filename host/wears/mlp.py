"""Int8 MLPs for the watch: training on the watch's int8 inputs, TFLite-style quantization, and
the watch runtime (`watch.mlp`) emulated in numpy, bit for bit.

The watch maps each int32 fixed-point feature to an int8 input `q = clamp((x - offset) >> shift,
-128, 127)`; the network sees `q / INPUT_DIVISOR`. `fit_mlp` learns the offsets and shifts
(mean and spread of the training data), then fits a scikit-learn `MLPClassifier` on exactly
those inputs, so the float model and the int8 model differ only in the quantization of the
weights and activations. `quantize_mlp` turns it into a `QuantizedMLP`: int8 weights
(symmetric, per tensor), int32 biases, per-layer Q31 multipliers and shifts computed from
float32 scales the way TFLite computes them when it runs the same model from a .tflite file.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(-5000, 5000, size=(400, 3))
    >>> y = (X[:, 0] + X[:, 1] > 0).astype(int)
    >>> float_model = fit_mlp(X, y, hidden=(8,), seed=0)
    >>> qm = quantize_mlp(float_model, X, feature_spec=1)
    >>> bool(np.mean(qm.predict(X) == float_model.predict(X)) > 0.95)
    True
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
from sklearn.neural_network import MLPClassifier

from watch import blob as B

from .blob import BlobModel, window_settings

INPUT_DIVISOR = 32.0  # the float network's input is q / 32: int8 q spans about +-4
_SPREAD = 4.0  # standard deviations that the int8 input range covers (before the power-of-two shift)
_ACC_LIMIT = 0x3FFFFFFF  # watch.mlp._ACC_LIMIT: |bias| + n_in * 128 * 255 must stay within it


def input_scaling(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature (offset, shift) mapping int32 features to int8: the offset at the mean, the
    smallest shift that brings `_SPREAD` standard deviations within 127."""
    X = np.asarray(X, dtype=np.float64)
    offsets = np.clip(np.round(X.mean(axis=0)), B.X_MIN, B.X_MAX).astype(np.int64)
    spread = np.maximum(_SPREAD * X.std(axis=0), 1.0)
    shifts = np.clip(np.ceil(np.log2(spread / B.Q8_MAX)), 0, B.MAX_SHIFT).astype(np.int64)
    return offsets, shifts


def quantize_inputs(X, offsets, shifts) -> np.ndarray:
    """The watch's int8 inputs for integer features `X` (n, n_features)."""
    X = np.clip(np.asarray(X, dtype=np.int64), B.X_MIN, B.X_MAX)
    return np.clip((X - offsets) >> shifts, B.Q8_MIN, B.Q8_MAX)


class FloatMLP:
    """The float reference: the watch's int8 inputs / INPUT_DIVISOR into a scikit-learn MLP.

    Attributes:
        offsets_, shifts_: the input quantization.
        model_: the fitted `MLPClassifier` (ReLU hidden layers).
        classes_: the labels.
    """

    def __init__(self, offsets, shifts, model: MLPClassifier) -> None:
        self.offsets_ = np.asarray(offsets, dtype=np.int64)
        self.shifts_ = np.asarray(shifts, dtype=np.int64)
        self.model_ = model
        self.classes_ = model.classes_

    def network_input(self, X_int) -> np.ndarray:
        return quantize_inputs(X_int, self.offsets_, self.shifts_) / INPUT_DIVISOR

    # np.asarray returns these arrays as they are: scikit-learn's unannotated returns widen to
    # every type its helpers can give (sparse matrices, strings), which a fitted MLP never does.
    def predict(self, X_int) -> np.ndarray:
        return np.asarray(self.model_.predict(self.network_input(X_int)))

    def predict_proba(self, X_int) -> np.ndarray:
        return np.asarray(self.model_.predict_proba(self.network_input(X_int)))

    def layers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(W (n_in, n_out), b) per layer, with a binary model's single logistic output
        written as two logits [0, z] (the same decision and softmax probabilities)."""
        out = [(np.asarray(w, float), np.asarray(b, float)) for w, b in zip(self.model_.coefs_,
                                                                             self.model_.intercepts_)]
        if self.model_.out_activation_ == "logistic":
            w, b = out[-1]
            out[-1] = (np.hstack([np.zeros_like(w), w]), np.concatenate([[0.0], b]))
        return out


def fit_mlp(X_int, y, *, hidden: tuple[int, ...] = (16,), seed: int = 0, max_iter: int = 600) -> FloatMLP:
    """Fit the float reference MLP on the watch's int8 inputs of `X_int`.

    Parameters:
        X_int: integer (fixed-point) features (n, n_features).
        y: labels.
        hidden: hidden layer widths (ReLU).
        seed: random state.
    """
    X_int = np.asarray(X_int, dtype=np.int64)
    offsets, shifts = input_scaling(X_int)
    model = MLPClassifier(hidden_layer_sizes=hidden, activation="relu", alpha=1e-3, max_iter=max_iter,
                          random_state=seed)
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(quantize_inputs(X_int, offsets, shifts) / INPUT_DIVISOR, y)
    return FloatMLP(offsets, shifts, model)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: (Q31 multiplier, shift) with real = m * 2**shift / 2**31."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    fixed = int(math.floor(q * (1 << 31) + 0.5))  # TfLiteRound: half away from zero (q > 0)
    if fixed == 1 << 31:
        fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return fixed, shift


@dataclass
class Layer:
    """One int8 FullyConnected layer, as TFLite stores and runs it."""

    weights: np.ndarray  # int8 (n_out, n_in)
    bias: np.ndarray  # int32 (n_out,)
    input_scale: np.float32
    input_zero_point: int
    weight_scale: np.float32
    output_scale: np.float32
    output_zero_point: int
    relu: bool

    @property
    def multiplier(self) -> tuple[int, int]:
        # As TFLite's GetQuantizedConvolutionMultipler: the float32 scales widened to double.
        real = float(self.input_scale) * float(self.weight_scale) / float(self.output_scale)
        return quantize_multiplier(real)

    @property
    def activation(self) -> tuple[int, int]:
        """(min, max) of the int8 output: TFLite's CalculateActivationRangeQuantized."""
        return (max(-128, self.output_zero_point) if self.relu else -128), 127


def requantize(acc: np.ndarray, multiplier: int, shift: int) -> np.ndarray:
    """TFLite's MultiplyByQuantizedMultiplier (single rounding) for shift <= 0."""
    total = 31 - shift
    return (acc.astype(np.int64) * multiplier + (1 << (total - 1))) >> total


class QuantizedMLP(BlobModel):
    """An MLP in the watch's int8 form, and the watch's runtime emulated in numpy.

    Attributes:
        feature_spec, classes_, offsets_, shifts_: as for `QuantizedForest`.
        layers_: the `Layer`s, input to output.
        exp_table_: u16 x 256, `round(65535 * exp(-d * s_out))` for a logit difference d.
    """

    KIND = B.KIND_MLP_INT8
    TOO_LARGE_HINT = ": use fewer or narrower layers"

    def __init__(self, *, feature_spec: int, classes, offsets, shifts, layers: list[Layer],
                 window=(0, 0, 0)) -> None:
        self.feature_spec = int(feature_spec)
        self.window = window_settings(window)
        self.classes_ = np.asarray(classes)
        self.offsets_ = np.asarray(offsets, dtype=np.int64)
        self.shifts_ = np.asarray(shifts, dtype=np.int64)
        self.layers_ = layers
        s_out = float(layers[-1].output_scale)
        self.exp_table_ = np.maximum(1, np.round(65535 * np.exp(-np.arange(B.MLP_TABLE_SIZE) * s_out))).astype(
            np.int64)
        self._check()

    def _check(self) -> None:
        if not 1 <= len(self.layers_) <= B.MLP_MAX_LAYERS:
            raise ValueError(f"an MLP has 1..{B.MLP_MAX_LAYERS} layers")
        n_in = self.n_features
        for i, layer in enumerate(self.layers_):
            if layer.weights.shape[1] != n_in:
                raise ValueError(f"layer {i} takes {layer.weights.shape[1]} inputs, the previous gives {n_in}")
            mult, shift = layer.multiplier
            if shift > 0:
                raise ValueError(f"layer {i}: requantization scale >= 1, which the watch does not run")
            if np.any(np.abs(layer.bias) + n_in * 128 * 255 > _ACC_LIMIT):
                raise ValueError(f"layer {i}: a bias too large for the watch's accumulator")
            n_in = layer.weights.shape[0]
        if n_in != self.n_classes:
            raise ValueError("the last layer needs one output per class")

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.n_features, *(layer.weights.shape[0] for layer in self.layers_))

    def quantize(self, X_int) -> np.ndarray:
        return quantize_inputs(X_int, self.offsets_, self.shifts_)

    def logits_from_int8(self, q: np.ndarray) -> np.ndarray:
        """The int8 outputs for int8 network inputs `q` (n, n_features): TFLite's reference
        FullyConnected, layer after layer."""
        a = np.asarray(q, dtype=np.int64)
        for layer in self.layers_:
            acc = (a - layer.input_zero_point) @ layer.weights.astype(np.int64).T + layer.bias.astype(np.int64)
            mult, shift = layer.multiplier
            out = requantize(acc, mult, shift) + layer.output_zero_point
            lo, hi = layer.activation
            a = np.clip(out, lo, hi)
        return a

    def logits(self, X_int) -> np.ndarray:
        return self.logits_from_int8(self.quantize(X_int))

    def predict(self, X_int) -> np.ndarray:
        """The watch's label (class index) per row: the largest logit, lowest on ties."""
        return np.argmax(self.logits(X_int), axis=1)

    def predict_proba_u8(self, X_int) -> np.ndarray:
        logits = self.logits(X_int)
        e = self.exp_table_[logits.max(axis=1, keepdims=True) - logits]
        total = e.sum(axis=1, keepdims=True)
        return ((e * 255 + (total >> 1)) // total).astype(np.uint8)

    @property
    def payload(self) -> bytes:
        """The MLP payload of the blob (docs/model-blob.md, kind 2)."""
        parts = [struct.pack(B.MLP_HEADER, len(self.layers_), 0, 0)]
        for layer in self.layers_:
            mult, shift = layer.multiplier
            lo, hi = layer.activation
            n_out, n_in = layer.weights.shape
            parts.append(struct.pack(B.MLP_LAYER, n_in, n_out, layer.input_zero_point, layer.output_zero_point, lo,
                                     hi, shift, 0, mult))
        parts += [layer.weights.astype("i1").tobytes() for layer in self.layers_]
        parts += [layer.bias.astype("<i4").tobytes() for layer in self.layers_]
        parts.append(self.exp_table_.astype("<u2").tobytes())
        return b"".join(parts)

    def __repr__(self) -> str:
        return (f"QuantizedMLP(feature_spec={self.feature_spec}, shape={self.shape}, "
                f"size_bytes={self.size_bytes})")


def _range_scale(lo: float, hi: float) -> tuple[np.float32, int]:
    # Asymmetric int8 quantization of [lo, hi] (widened to hold 0), as TFLite's converter does.
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = np.float32(max(hi - lo, 1e-6) / 255.0)
    zero = int(np.clip(np.round(-128 - lo / float(scale)), -128, 127))
    return scale, zero


def quantize_mlp(float_model: FloatMLP, X_calibration, feature_spec: int, window=(0, 0, 0)) -> QuantizedMLP:
    """The int8 form of a fitted `FloatMLP`, calibrated on `X_calibration` (integer features);
    `window` (window_s, step_s, baseline_windows) goes into its blob.

    Weights: symmetric per-tensor int8 (scale max|W| / 127). Activations: asymmetric int8 over
    the range the float network reaches on the calibration rows (ReLU outputs from 0).
    Biases: int32 at scale input_scale * weight_scale, TFLite's convention.
    """
    a_float = float_model.network_input(X_calibration)
    in_scale, in_zero = np.float32(1.0 / INPUT_DIVISOR), 0
    layers = []
    fl = float_model.layers()
    for i, (w, b) in enumerate(fl):
        last = i == len(fl) - 1
        z = a_float @ w + b
        out = z if last else np.maximum(z, 0.0)
        out_scale, out_zero = _range_scale(float(out.min()), float(out.max()))
        w_scale = np.float32(max(np.abs(w).max(), 1e-8) / 127.0)
        wq = np.clip(np.round(w.T / float(w_scale)), -127, 127).astype(np.int8)
        bias_scale = float(in_scale) * float(w_scale)
        bq = np.clip(np.round(b / bias_scale), -(1 << 28), 1 << 28).astype(np.int32)
        layers.append(Layer(wq, bq, in_scale, in_zero, w_scale, out_scale, out_zero, relu=not last))
        a_float = out
        in_scale, in_zero = out_scale, out_zero
    return QuantizedMLP(feature_spec=feature_spec, classes=float_model.classes_, offsets=float_model.offsets_,
                        shifts=float_model.shifts_, layers=layers, window=window)
