"""Float models as ONNX (skl2onnx), checked with onnxruntime against scikit-learn.

The ONNX file is the float reference for phones and desktops: a forest takes the watch's
int32 features as float32; an MLP (`wears.mlp.FloatMLP`) takes the network input q / 32.

Example:
    >>> import numpy as np
    >>> from sklearn.ensemble import ExtraTreesClassifier
    >>> X = np.random.default_rng(0).integers(-99, 99, size=(60, 3))
    >>> data, agreement = to_onnx(ExtraTreesClassifier(n_estimators=3).fit(X, X[:, 0] > 0), X)
    >>> agreement
    1.0
"""

from __future__ import annotations

from typing import cast

import numpy as np

from .errors import WearsError


def to_onnx(model, X_check: np.ndarray) -> tuple[bytes, float]:
    """(ONNX bytes, fraction of `X_check` rows where onnxruntime's label equals scikit-learn's)."""
    import onnxruntime as ort
    from onnx import ModelProto
    from skl2onnx import to_onnx as skl_to_onnx

    X = np.asarray(X_check, dtype=np.float32)
    # skl2onnx leaves its return unannotated, so pyright joins every path of it (graphs, the
    # intermediate topology, estimators); without intermediate=True it is a ModelProto.
    onx = cast(ModelProto, skl_to_onnx(model, X[:1], options={id(model): {"zipmap": False}}, target_opset=17))
    data = onx.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    labels = session.run(None, {session.get_inputs()[0].name: X})[0]
    agreement = float(np.mean(labels == model.predict(X)))
    if agreement < 0.999:
        raise WearsError(f"onnxruntime agrees with scikit-learn on only {agreement:.4f} of the rows")
    return data, agreement
