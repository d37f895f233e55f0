"""WEARS model blob, format version 1: the one definition both the watch and the host use.

Specified in docs/model-blob.md. Little-endian:

    header (20 bytes) | quantization (5 x n_features) | payload | CRC32 (4) | HMAC-SHA256 (32)

The parsers read from caller-owned buffers and return plain tuples, so they run unchanged
in MicroPython on the watch and in CPython on the host.
"""

try:
    from micropython import const
except ImportError:  # CPython: the host imports this module too
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

import struct

from watch.protocol import OK, E_TRUNCATED, E_BAD_MAGIC, E_BAD_VERSION

MAGIC = b"WMDL"
FORMAT_VERSION = const(1)

# Model kinds.
KIND_TREES = const(1)  # quantized tree ensemble, soft vote
KIND_MLP_INT8 = const(2)  # int8 multilayer perceptron, TFLite int8 FullyConnected arithmetic
KINDS = {KIND_TREES: "tree ensemble", KIND_MLP_INT8: "int8 MLP"}

# Header: magic, format version, kind, feature-spec id, n_features, n_classes, reserved (0),
# payload length, model id.
HEADER = "<4sBBHBBHII"
HEADER_SIZE = const(20)
VERSION_OFFSET = const(4)  # the version byte, read before trusting the rest of the header

# Quantization table right after the header: n_features x int32 offset, then n_features x u8
# right shift.  q = clamp((clamp(x, X_MIN, X_MAX) - offset) >> shift, Q_MIN, Q_MAX).
QUANT_ENTRY_SIZE = const(5)
X_MIN = const(-0x20000000)  # feature values are clamped here first, so x - offset fits a
X_MAX = const(0x1FFFFFFF)  # 31-bit small int on 32-bit ports (no allocation, no overflow)
Q_MIN = const(-32768)
Q_MAX = const(32767)
MAX_SHIFT = const(31)

# Tree payload: n_trees, n_nodes, n_leaves, reserved (0); then roots (u16 x n_trees),
# feature (u8 x n_nodes), threshold (u16 x n_nodes, biased), right (u16 x n_nodes),
# leaf table (u8 x n_leaves x n_classes).
TREES_HEADER = "<HHHH"
TREES_HEADER_SIZE = const(8)
LEAF = const(255)  # feature byte of a leaf; its right field is the leaf-table row
BIAS = const(32768)  # stored threshold = t + BIAS, quantized feature = q + BIAS: unsigned compare
MAX_FEATURES = const(254)  # feature indices 0..253 fit a byte next to LEAF
MAX_NODES = const(65535)

# MLP payload: n_layers (u8), reserved (u8, u16); per layer n_in, n_out (u16), input zero point,
# output zero point, activation min, max (i8), shift (i8, <= 0: a right shift), reserved (u8),
# Q31 multiplier (i32); then all weights (i8, per layer n_out rows of n_in), all biases (i32),
# and the exp table (u16 x 256) turning logit differences into probabilities.
MLP_HEADER = "<BBH"
MLP_HEADER_SIZE = const(4)
MLP_LAYER = "<HHbbbbbBi"
MLP_LAYER_SIZE = const(14)
MLP_MAX_LAYERS = const(8)
MLP_TABLE_SIZE = const(256)
Q8_MIN = const(-128)  # an MLP's inputs are int8: q = clamp((x - offset) >> shift, Q8_MIN, Q8_MAX)
Q8_MAX = const(127)

CRC_SIZE = const(4)
MAC_SIZE = const(32)
TRAILER_SIZE = const(36)  # CRC32 + HMAC-SHA256

MAX_BYTES = const(32768)  # the largest blob the watch accepts (a third of its heap budget)


def quant_size(n_features):
    return QUANT_ENTRY_SIZE * n_features


def blob_size(n_features, payload_length):
    """Total bytes of a blob whose header declares these."""
    return HEADER_SIZE + QUANT_ENTRY_SIZE * n_features + payload_length + TRAILER_SIZE


def trees_payload_size(n_trees, n_nodes, n_leaves, n_classes):
    """Bytes of a tree payload: what the payload length must be for these counts."""
    return TREES_HEADER_SIZE + 2 * n_trees + 5 * n_nodes + n_leaves * n_classes


def mlp_payload_size(n_layers, n_weights, n_biases):
    """Bytes of an MLP payload with these counts."""
    return MLP_HEADER_SIZE + MLP_LAYER_SIZE * n_layers + n_weights + 4 * n_biases + 2 * MLP_TABLE_SIZE


def parse_header(buf):
    """(magic, version, kind, feature_spec, n_features, n_classes, reserved, payload_length,
    model_id) from the first HEADER_SIZE bytes of `buf`; no checks."""
    return struct.unpack_from(HEADER, buf, 0)


def check_header(buf, size):
    """The reason code (watch.protocol) a blob of `size` bytes whose first bytes are `buf`
    gets from its header alone, in this order: shorter than a header (E_TRUNCATED), bad magic,
    unsupported version, a length other than the header declares (E_TRUNCATED); OK else."""
    if size < HEADER_SIZE or len(buf) < HEADER_SIZE:
        return E_TRUNCATED
    fields = parse_header(buf)
    if fields[0] != MAGIC:
        return E_BAD_MAGIC
    if fields[1] != FORMAT_VERSION:
        return E_BAD_VERSION
    if size != blob_size(fields[4], fields[7]):
        return E_TRUNCATED
    return OK


def parse_trees_header(buf):
    """(n_trees, n_nodes, n_leaves, reserved) from the first bytes of a tree payload."""
    return struct.unpack_from(TREES_HEADER, buf, 0)
