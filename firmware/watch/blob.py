"""WEARS model blob, format version 2 (version 1 still read): the one definition both the
watch and the host use.

Specified in docs/model-blob.md. Little-endian:

    header (20 bytes) | window (8 bytes, version 2) | quantization (5 x n_features) | payload |
    CRC32 (4) | HMAC-SHA256 (32)

The parsers read from caller-owned buffers and return plain tuples, so they run unchanged
in MicroPython on the watch and in CPython on the host.
"""

try:
    from micropython import const
except ImportError:  # CPython: the host imports this module too
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

import struct

# The reason codes a blob can be refused with (watch.protocol's, docs/protocol.md; a test
# checks they agree). Mirrored so that loading a model does not need the protocol module's
# tables in RAM.
_OK = const(0)
E_TRUNCATED = const(1)
_E_BAD_MAGIC = const(2)
_E_BAD_VERSION = const(3)
_E_BAD_CRC = const(4)
_E_BAD_SIGNATURE = const(5)
E_UNSUPPORTED_KIND = const(6)
_E_FEATURE_MISMATCH = const(7)
_E_TOO_LARGE = const(8)

_MAGIC = const(b"WMDL")
_FORMAT_VERSION = const(2)  # what the host writes
OLD_VERSION = const(1)  # still read: no window settings, the version-1 tree payload

# Model kinds.
KIND_TREES = const(1)  # quantized tree ensemble, soft vote
_KIND_MLP_INT8 = const(2)  # int8 multilayer perceptron, TFLite int8 FullyConnected arithmetic

# Header: magic, format version, kind, feature-spec id, n_features, n_classes, reserved (0),
# payload length, model id.
_HEADER = const("<4sBBHBBHII")
HEADER_SIZE = const(20)
_VERSION_OFFSET = const(4)  # the version byte, read before trusting the rest of the header

# Version 2: the model's window settings right after the header (inside what the model id
# covers): window length and step in seconds, the number of calm windows its baseline
# averages (0: the model takes raw features), reserved (0).
WINDOW = "<HHHH"
WINDOW_SIZE = const(8)

# Quantization table right after the header: n_features x int32 offset, then n_features x u8
# right shift.  q = clamp((clamp(x, X_MIN, X_MAX) - offset) >> shift, _Q_MIN, _Q_MAX).
QUANT_ENTRY_SIZE = const(5)
_X_MIN = const(-0x20000000)  # feature values are clamped here first, so x - offset fits a
_X_MAX = const(0x1FFFFFFF)  # 31-bit small int on 32-bit ports (no allocation, no overflow)
_Q_MIN = const(-32768)
_Q_MAX = const(32767)
MAX_SHIFT = const(31)

# Tree payload, version 2 (all u16): n_trees, n_inner, n_leaf_rows, reserved (0); the leaf
# table (n_leaf_rows rows of n_classes probabilities x/255, padded with a 0 to an even count);
# roots (a reference per tree); inner nodes (feature, threshold + BIAS, left, right). A
# reference is a byte offset in the payload: a leaf row when it lies before the first node
# (the leaf table comes first), else an inner node. This is the watch's in-RAM layout.
_TREES_HEADER = const("<HHHH")
TREES_HEADER_SIZE = const(8)
NODE_SIZE = const(8)
MAX_TREES_PAYLOAD = const(0x7FFF)  # references and the watch's workspace offsets fit a u16
MAX_TREES = const(257)  # the watch adds two classes' votes in one 32-bit word: 255 * 257 < 2**16
# Version 1 tree payload: n_trees, n_nodes, n_leaves, reserved (0); then roots (u16 x n_trees),
# feature (u8 x n_nodes), threshold (u16 x n_nodes, biased), right (u16 x n_nodes),
# leaf table (u8 x n_leaves x n_classes).
LEAF = const(255)  # version 1: feature byte of a leaf; its right field is the leaf-table row
_BIAS = const(32768)  # stored threshold = t + BIAS, quantized feature = q + BIAS: unsigned compare
_MAX_FEATURES = const(254)  # feature indices 0..253 (a byte next to version 1's LEAF)
_MAX_NODES = const(65535)

# MLP payload: n_layers (u8), reserved (u8, u16); per layer n_in, n_out (u16), input zero point,
# output zero point, activation min, max (i8), shift (i8, <= 0: a right shift), reserved (u8),
# Q31 multiplier (i32); then all weights (i8, per layer n_out rows of n_in), all biases (i32),
# and the exp table (u16 x 256) turning logit differences into probabilities.
_MLP_HEADER = const("<BBH")
MLP_HEADER_SIZE = const(4)
MLP_LAYER = "<HHbbbbbBi"
MLP_LAYER_SIZE = const(14)
MLP_MAX_LAYERS = const(8)
MLP_TABLE_SIZE = const(256)
_Q8_MIN = const(-128)  # an MLP's inputs are int8: q = clamp((x - offset) >> shift, _Q8_MIN, _Q8_MAX)
_Q8_MAX = const(127)

CRC_SIZE = const(4)
_MAC_SIZE = const(32)
TRAILER_SIZE = const(36)  # CRC32 + HMAC-SHA256

MAX_BYTES = const(32768)  # the largest blob the watch accepts (a third of its heap budget)


def quant_size(n_features):
    return QUANT_ENTRY_SIZE * n_features


def head_size(version):
    """Bytes before the quantization table: the header, and in version 2 the window settings."""
    return HEADER_SIZE + (WINDOW_SIZE if version >= 2 else 0)


def blob_size(n_features, payload_length, version=_FORMAT_VERSION):
    """Total bytes of a blob whose header declares these."""
    return head_size(version) + QUANT_ENTRY_SIZE * n_features + payload_length + TRAILER_SIZE


def leaf_row_size(n_classes):
    """Bytes of one version-2 leaf row: n_classes u16, padded to whole 32-bit words."""
    return 2 * (n_classes + (n_classes & 1))


def trees_payload_size(n_trees, n_nodes, n_leaves, n_classes, version=_FORMAT_VERSION):
    """Bytes of a tree payload: what the payload length must be for these counts (version 2:
    n_nodes counts the inner nodes, n_leaves the leaf rows)."""
    if version >= 2:
        return TREES_HEADER_SIZE + n_leaves * leaf_row_size(n_classes) + 2 * n_trees + NODE_SIZE * n_nodes
    return TREES_HEADER_SIZE + 2 * n_trees + 5 * n_nodes + n_leaves * n_classes


def mlp_payload_size(n_layers, n_weights, n_biases):
    """Bytes of an MLP payload with these counts."""
    return MLP_HEADER_SIZE + MLP_LAYER_SIZE * n_layers + n_weights + 4 * n_biases + 2 * MLP_TABLE_SIZE


def parse_header(buf):
    """(magic, version, kind, feature_spec, n_features, n_classes, reserved, payload_length,
    model_id) from the first HEADER_SIZE bytes of `buf`; no checks."""
    return struct.unpack_from(_HEADER, buf, 0)


def check_header(buf, size):
    """The reason code (watch.protocol) a blob of `size` bytes whose first bytes are `buf`
    gets from its header alone, in this order: shorter than a header (E_TRUNCATED), bad magic,
    unsupported version, a length other than the header declares (E_TRUNCATED); OK else."""
    if size < HEADER_SIZE or len(buf) < HEADER_SIZE:
        return E_TRUNCATED
    fields = parse_header(buf)
    if fields[0] != _MAGIC:
        return _E_BAD_MAGIC
    if fields[1] != _FORMAT_VERSION and fields[1] != OLD_VERSION:
        return _E_BAD_VERSION
    if size != blob_size(fields[4], fields[7], fields[1]):
        return E_TRUNCATED
    return _OK


def parse_trees_header(buf):
    """(n_trees, n_nodes, n_leaves, reserved) from the first bytes of a tree payload."""
    return struct.unpack_from(_TREES_HEADER, buf, 0)


# The host imports every name; on a watch the ones only the host reads stay `_` constants,
# out of the module's dictionary (an entry each, in RAM even when frozen); watch.model folds
# its own copies of the reason codes and kinds it needs (a test checks they agree).
if __import__("sys").implementation.name != "micropython":  # (no `sys` entry either)
    OK = _OK
    E_BAD_CRC = _E_BAD_CRC
    E_BAD_SIGNATURE = _E_BAD_SIGNATURE
    E_FEATURE_MISMATCH = _E_FEATURE_MISMATCH
    E_TOO_LARGE = _E_TOO_LARGE
    KIND_MLP_INT8 = _KIND_MLP_INT8
    X_MIN = _X_MIN
    X_MAX = _X_MAX
    BIAS = _BIAS
    E_BAD_MAGIC = _E_BAD_MAGIC
    E_BAD_VERSION = _E_BAD_VERSION
    MAGIC = _MAGIC
    FORMAT_VERSION = _FORMAT_VERSION
    HEADER = _HEADER
    VERSION_OFFSET = _VERSION_OFFSET
    Q_MIN = _Q_MIN
    Q_MAX = _Q_MAX
    TREES_HEADER = _TREES_HEADER
    MAX_FEATURES = _MAX_FEATURES
    MAX_NODES = _MAX_NODES
    MLP_HEADER = _MLP_HEADER
    Q8_MIN = _Q8_MIN
    Q8_MAX = _Q8_MAX
    MAC_SIZE = _MAC_SIZE
    KINDS = {KIND_TREES: "tree ensemble", _KIND_MLP_INT8: "int8 MLP"}
