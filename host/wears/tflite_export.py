"""A `QuantizedMLP` as a TFLite int8 model, written without TensorFlow (`tflite` + `flatbuffers`).

The graph is the watch's network and nothing else: an int8 input of n_features (the watch's
quantized features, scale 1/INPUT_DIVISOR, zero point 0), one FULLY_CONNECTED per layer (int8
weights per tensor, int32 bias, fused ReLU on hidden layers) and int8 logits out. TFLite derives
each layer's multiplier from the float32 scales stored here, as `QuantizedMLP.Layer.multiplier`
does, so a TFLite interpreter and the watch give identical logits (`run_tflite` checks it).

Example:
    >>> from wears.mlp import fit_mlp, quantize_mlp
    >>> import numpy as np
    >>> X = np.random.default_rng(1).integers(-900, 900, size=(200, 4))
    >>> qm = quantize_mlp(fit_mlp(X, X[:, 0] > 0, hidden=(6,)), X, feature_spec=1)
    >>> data = to_tflite(qm)
    >>> data[4:8]
    b'TFL3'
"""

from __future__ import annotations

import flatbuffers
import numpy as np
import tflite

from .errors import WearsError
from .mlp import QuantizedMLP

_FC_VERSION = 4  # FULLY_CONNECTED with int8 tensors (TFLite's op versioning)


def _vector(builder: flatbuffers.Builder, start, items, prepend) -> int:
    start(builder, len(items))
    for item in reversed(items):
        prepend(item)
    return builder.EndVector()


def _quantization(builder: flatbuffers.Builder, scale: float, zero_point: int) -> int:
    scales = _vector(builder, tflite.QuantizationParametersStartScaleVector, [float(np.float32(scale))],
                     builder.PrependFloat32)
    zeros = _vector(builder, tflite.QuantizationParametersStartZeroPointVector, [int(zero_point)],
                    builder.PrependInt64)
    tflite.QuantizationParametersStart(builder)
    tflite.QuantizationParametersAddScale(builder, scales)
    tflite.QuantizationParametersAddZeroPoint(builder, zeros)
    return tflite.QuantizationParametersEnd(builder)


def to_tflite(qm: QuantizedMLP, description: str = "WEARS int8 MLP") -> bytes:
    """The .tflite file (bytes) of `qm`. Input `input` int8 [1, n_features], output `logits` int8."""
    b = flatbuffers.Builder(4096)
    # Buffer 0 is the empty sentinel TFLite expects; constant tensors get their own.
    blobs: list[bytes] = [b""]
    tensors: list[tuple[str, list[int], int, float, int, int]] = []  # name, shape, type, scale, zp, buffer

    def tensor(name: str, shape: list[int], ttype: int, scale: float | np.floating, zp: int,
               data: bytes | None = None) -> int:
        buf = 0
        if data is not None:
            blobs.append(data)
            buf = len(blobs) - 1
        tensors.append((name, shape, ttype, float(scale), zp, buf))  # float32 -> float is exact
        return len(tensors) - 1

    T = tflite.TensorType
    first = qm.layers_[0]
    x = tensor("input", [1, qm.n_features], T.INT8, first.input_scale, first.input_zero_point)
    ops = []
    for i, layer in enumerate(qm.layers_):
        n_out, n_in = layer.weights.shape
        w = tensor(f"dense{i}/weights", [n_out, n_in], T.INT8, layer.weight_scale, 0,
                   layer.weights.astype(np.int8).tobytes())
        bias_scale = float(np.float32(float(layer.input_scale) * float(layer.weight_scale)))
        bi = tensor(f"dense{i}/bias", [n_out], T.INT32, bias_scale, 0, layer.bias.astype("<i4").tobytes())
        last = i == len(qm.layers_) - 1
        y = tensor("logits" if last else f"dense{i}/relu", [1, n_out], T.INT8, layer.output_scale,
                   layer.output_zero_point)
        ops.append(([x, w, bi], [y], tflite.ActivationFunctionType.RELU if layer.relu else
                    tflite.ActivationFunctionType.NONE))
        x = y

    buffer_offsets = []
    for data in blobs:
        vec = b.CreateNumpyVector(np.frombuffer(data, dtype=np.uint8)) if data else None
        tflite.BufferStart(b)
        if vec is not None:
            tflite.BufferAddData(b, vec)
        buffer_offsets.append(tflite.BufferEnd(b))

    tensor_offsets = []
    for name, shape, ttype, scale, zp, buf in tensors:
        name_off = b.CreateString(name)
        shape_off = _vector(b, tflite.TensorStartShapeVector, shape, b.PrependInt32)
        quant = _quantization(b, scale, zp)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape_off)
        tflite.TensorAddType(b, ttype)
        tflite.TensorAddBuffer(b, buf)
        tflite.TensorAddName(b, name_off)
        tflite.TensorAddQuantization(b, quant)
        tensor_offsets.append(tflite.TensorEnd(b))

    op_offsets = []
    for inputs, outputs, activation in ops:
        tflite.FullyConnectedOptionsStart(b)
        tflite.FullyConnectedOptionsAddFusedActivationFunction(b, activation)
        options = tflite.FullyConnectedOptionsEnd(b)
        ins = _vector(b, tflite.OperatorStartInputsVector, inputs, b.PrependInt32)
        outs = _vector(b, tflite.OperatorStartOutputsVector, outputs, b.PrependInt32)
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, 0)
        tflite.OperatorAddInputs(b, ins)
        tflite.OperatorAddOutputs(b, outs)
        tflite.OperatorAddBuiltinOptionsType(b, tflite.BuiltinOptions.FullyConnectedOptions)
        tflite.OperatorAddBuiltinOptions(b, options)
        op_offsets.append(tflite.OperatorEnd(b))

    t_vec = _vector(b, tflite.SubGraphStartTensorsVector, tensor_offsets, b.PrependUOffsetTRelative)
    in_vec = _vector(b, tflite.SubGraphStartInputsVector, [0], b.PrependInt32)
    out_vec = _vector(b, tflite.SubGraphStartOutputsVector, [len(tensors) - 1], b.PrependInt32)
    op_vec = _vector(b, tflite.SubGraphStartOperatorsVector, op_offsets, b.PrependUOffsetTRelative)
    graph_name = b.CreateString("main")
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, t_vec)
    tflite.SubGraphAddInputs(b, in_vec)
    tflite.SubGraphAddOutputs(b, out_vec)
    tflite.SubGraphAddOperators(b, op_vec)
    tflite.SubGraphAddName(b, graph_name)
    graph = tflite.SubGraphEnd(b)

    tflite.OperatorCodeStart(b)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(b, tflite.BuiltinOperator.FULLY_CONNECTED)
    tflite.OperatorCodeAddBuiltinCode(b, tflite.BuiltinOperator.FULLY_CONNECTED)
    tflite.OperatorCodeAddVersion(b, _FC_VERSION)
    opcode = tflite.OperatorCodeEnd(b)

    codes = _vector(b, tflite.ModelStartOperatorCodesVector, [opcode], b.PrependUOffsetTRelative)
    graphs = _vector(b, tflite.ModelStartSubgraphsVector, [graph], b.PrependUOffsetTRelative)
    buffers = _vector(b, tflite.ModelStartBuffersVector, buffer_offsets, b.PrependUOffsetTRelative)
    desc = b.CreateString(description)
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, codes)
    tflite.ModelAddSubgraphs(b, graphs)
    tflite.ModelAddDescription(b, desc)
    tflite.ModelAddBuffers(b, buffers)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def run_tflite(model: bytes, q: np.ndarray, *, reference_kernels: bool = True) -> np.ndarray:
    """The int8 logits a TFLite interpreter (ai-edge-litert) computes for int8 inputs `q`
    (n, n_features). `reference_kernels` picks TFLite's reference kernels (BUILTIN_REF);
    False runs the optimized ones phones use."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError as e:  # pragma: no cover - depends on the platform's wheels
        raise WearsError("checking a .tflite file needs ai-edge-litert (pip install ai-edge-litert)") from e
    resolver = OpResolverType.BUILTIN_REF if reference_kernels else OpResolverType.BUILTIN
    interp = Interpreter(model_content=bytes(model), experimental_op_resolver_type=resolver)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    out = interp.get_output_details()[0]["index"]
    q = np.asarray(q, dtype=np.int8)
    result = np.empty((len(q), interp.get_output_details()[0]["shape"][-1]), dtype=np.int64)
    for i, row in enumerate(q):
        interp.set_tensor(inp, row.reshape(1, -1))
        interp.invoke()
        result[i] = interp.get_tensor(out)[0]
    return result
