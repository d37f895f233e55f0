"""Build, check and describe model blobs (docs/model-blob.md), and the keys that sign them.

The layout and constants come from the firmware's `watch.blob`, never from a copy; the
checks run in the same order as the watch's `watch.loader.load`, with the same reason codes.

Example:
    >>> key = new_key()
    >>> one_leaf = bytes.fromhex("0100000001000000" "ff000000" "0880")  # 1 tree: its root is leaf row 0
    >>> data = build_blob(KIND_TREES, 7, 2, [0], [0], one_leaf, key, window=(60, 5, 0))
    >>> info = read_blob(data, key)
    >>> info.feature_spec, info.n_features, info.n_trees, info.size, info.window_s, info.signature_checked
    (7, 1, 1, 83, 60, True)
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from watch import blob as B
from watch import protocol as P

from .errors import ModelBlobError, WearsError
from .feature_specs import describe_spec

if TYPE_CHECKING:
    import numpy as np

KIND_TREES = B.KIND_TREES
KIND_MLP_INT8 = B.KIND_MLP_INT8
KEY_SIZE = 32
_HEADER = struct.Struct(B.HEADER)
_TREES_HEADER = struct.Struct(B.TREES_HEADER)


@dataclass(frozen=True)
class BlobInfo:
    """What a blob's header and trailer say, after `read_blob` checked them."""

    version: int
    kind: int
    feature_spec: int
    n_features: int
    n_classes: int
    payload_length: int
    model_id: int
    size: int
    crc: int
    signature_checked: bool  # False when read without a key: the HMAC was not verified
    offsets: tuple[int, ...]
    shifts: tuple[int, ...]
    window_s: int = 0  # the model's window settings (version 2; 0 in a version-1 blob)
    step_s: int = 0
    baseline_windows: int = 0  # calm windows its baseline averages; 0: raw features
    n_trees: int | None = None  # tree ensembles only
    n_nodes: int | None = None  # version 1: every node; version 2: the inner nodes
    n_leaves: int | None = None  # distinct leaf rows

    @property
    def kind_name(self) -> str:
        return B.KINDS.get(self.kind, f"kind {self.kind}")

    @property
    def payload_offset(self) -> int:
        return B.head_size(self.version) + B.quant_size(self.n_features)


def model_id(body: bytes) -> int:
    """The model id of everything after the 20-byte header up to the CRC (version 2: window
    settings, quantization table, payload): the first 4 bytes of its SHA-256, little-endian."""
    return int.from_bytes(hashlib.sha256(body).digest()[:4], "little")


def window_settings(window: Sequence[int]) -> tuple[int, int, int]:
    """(window_s, step_s, baseline_windows) as integers; ValueError unless there are three."""
    window_s, step_s, baseline = (int(v) for v in window)
    return window_s, step_s, baseline


def window_bytes(window: Sequence[int]) -> bytes:
    """The version-2 window settings (window_s, step_s, baseline_windows) as stored."""
    window_s, step_s, baseline = window_settings(window)
    if not all(0 <= v <= 0xFFFF for v in (window_s, step_s, baseline)):
        raise ValueError("window_s, step_s and baseline_windows are u16")
    return struct.pack(B.WINDOW, window_s, step_s, baseline, 0)


def build_blob(kind: int, feature_spec: int, n_classes: int, offsets: Sequence[int], shifts: Sequence[int],
               payload: bytes, key: bytes, window: Sequence[int] = (0, 0, 0)) -> bytes:
    """A complete signed blob (format version 2): header, window settings, quantization
    table, `payload`, CRC32, HMAC-SHA256.

    Parameters:
        kind: `KIND_TREES` (the payload layout is the caller's business).
        feature_spec: id of the feature set the model expects (u16).
        n_classes: number of classes the model outputs (1..255).
        offsets, shifts: per-feature int32 offset and u8 right shift.
        payload: the kind-specific payload.
        key: the watch's signing key.
        window: the model's window length and step in seconds and its baseline length in
            windows (0: raw features), which the watch computes its features with.

    Example:
        >>> len(build_blob(KIND_TREES, 1, 2, [0, 0], [0, 0], b"", bytes(32), (60, 5, 0)))
        74
    """
    n_features = len(offsets)
    if len(shifts) != n_features or not 1 <= n_features <= B.MAX_FEATURES:
        raise ValueError(f"need 1..{B.MAX_FEATURES} offsets and as many shifts")
    if not 1 <= n_classes <= 255 or not 0 <= feature_spec <= 0xFFFF:
        raise ValueError("n_classes must be 1..255 and feature_spec a u16")
    if not all(B.X_MIN <= o <= B.X_MAX for o in offsets) or not all(0 <= s <= B.MAX_SHIFT for s in shifts):
        raise ValueError(f"offsets must lie in [{B.X_MIN}, {B.X_MAX}] and shifts in [0, {B.MAX_SHIFT}]")
    body = window_bytes(window) + struct.pack(f"<{n_features}i{n_features}B", *offsets, *shifts) + bytes(payload)
    head = _HEADER.pack(B.MAGIC, B.FORMAT_VERSION, kind, feature_spec, n_features, n_classes, 0, len(payload),
                        model_id(body))
    data = head + body
    data += struct.pack("<I", binascii.crc32(data))
    return data + hmac.new(key, data, "sha256").digest()


def read_blob(data: bytes, key: bytes | None = None, *, feature_spec: int | None = None,
              n_features: int | None = None, max_bytes: int | None = None) -> BlobInfo:
    """Check a blob the way the watch does and return what its header says.

    Checks, in the watch's order: size (with `max_bytes`), header (truncated, magic, version,
    length), CRC32, signature (only with a `key`), model id, kind, feature set (only for the
    arguments given), tree-payload counts.

    Raises:
        ModelBlobError: with `.reason` the watch.protocol reason code it would answer.

    Example:
        >>> one_leaf = bytes.fromhex("0100000001000000" "ff000000" "0880")  # 1 tree: a leaf row
        >>> read_blob(build_blob(KIND_TREES, 7, 2, [0], [0], one_leaf, b"k" * 32), b"x" * 32)
        Traceback (most recent call last):
        ...
        wears.errors.ModelBlobError: HMAC does not match this key (bad signature)
    """
    data = bytes(data)
    size = len(data)
    if max_bytes is not None and size > max_bytes:
        _fail(P.E_TOO_LARGE, f"{size} bytes, the watch takes at most {max_bytes}")
    reason = B.check_header(data[:B.HEADER_SIZE], size)
    if reason == P.E_TRUNCATED and size >= B.HEADER_SIZE:
        fields = _HEADER.unpack_from(data)
        _fail(reason, f"{size} bytes, the header declares {B.blob_size(fields[4], fields[7], fields[1])}")
    if reason:
        _fail(reason, {P.E_TRUNCATED: f"{size} bytes, shorter than a header",
                       P.E_BAD_MAGIC: f"magic {data[:4]!r}, not {B.MAGIC!r}",
                       P.E_BAD_VERSION: f"format version {data[B.VERSION_OFFSET]}, not {B.OLD_VERSION} or "
                                        f"{B.FORMAT_VERSION}"}[reason])
    _, version, kind, spec, nf, n_classes, _, payload_length, mid = _HEADER.unpack_from(data)
    end = size - B.TRAILER_SIZE
    crc = struct.unpack_from("<I", data, end)[0]
    if binascii.crc32(data[:end]) != crc:
        _fail(P.E_BAD_CRC, f"CRC32 {binascii.crc32(data[:end]):08x}, the blob says {crc:08x}")
    if key is not None and not hmac.compare_digest(hmac.new(key, data[:end + B.CRC_SIZE], "sha256").digest(),
                                                   data[end + B.CRC_SIZE:]):
        _fail(P.E_BAD_SIGNATURE, "HMAC does not match this key")
    if model_id(data[B.HEADER_SIZE:end]) != mid:
        _fail(P.E_BAD_CRC, f"model id {mid:08x} is not the SHA-256 of the body")
    if kind not in B.KINDS:
        _fail(P.E_UNSUPPORTED_KIND, f"kind {kind}")
    if (feature_spec is not None and spec != feature_spec) or (n_features is not None and nf != n_features):
        _fail(P.E_FEATURE_MISMATCH, f"feature set {spec} with {nf} features, the watch computes "
                                    f"{feature_spec} with {n_features}")
    quant = struct.unpack_from(f"<{nf}i{nf}B", data, B.head_size(version))
    window = struct.unpack_from(B.WINDOW, data, B.HEADER_SIZE)[:3] if version >= 2 else (0, 0, 0)
    info = dict(version=version, kind=kind, feature_spec=spec, n_features=nf, n_classes=n_classes,
                payload_length=payload_length, model_id=mid, size=size, crc=crc, signature_checked=key is not None,
                offsets=quant[:nf], shifts=quant[nf:], window_s=window[0], step_s=window[1],
                baseline_windows=window[2])
    if kind == B.KIND_TREES:
        start = B.head_size(version) + B.quant_size(nf)
        if payload_length < B.TREES_HEADER_SIZE:
            _fail(P.E_TRUNCATED, f"tree payload of {payload_length} bytes, shorter than its header")
        n_trees, n_nodes, n_leaves, _ = _TREES_HEADER.unpack_from(data, start)
        expected = B.trees_payload_size(n_trees, n_nodes, n_leaves, n_classes, version)
        if payload_length != expected:
            _fail(P.E_TRUNCATED, f"payload of {payload_length} bytes, its counts need {expected}")
        info.update(n_trees=n_trees, n_nodes=n_nodes, n_leaves=n_leaves)
    return BlobInfo(**info)


def describe(data: bytes | BlobInfo, key: bytes | None = None) -> str:
    """A few lines for humans about a blob (checked with `read_blob` first when given bytes).

    Example:
        >>> one_leaf = bytes.fromhex("0100000001000000" "ff000000" "0880")
        >>> print(describe(build_blob(KIND_TREES, 7, 2, [0], [0], one_leaf, b"k" * 32)).splitlines()[0][:40])
        WEARS model blob v2, tree ensemble, mode
    """
    info = data if isinstance(data, BlobInfo) else read_blob(data, key)
    lines = [f"WEARS model blob v{info.version}, {info.kind_name}, model id {info.model_id:08x}",
             f"  {info.size} bytes (payload {info.payload_length}), CRC32 {info.crc:08x}, "
             f"signature {'verified' if info.signature_checked else 'not checked (no key)'}",
             f"  {describe_spec(info.feature_spec)}: {info.n_features} features -> {info.n_classes} classes",
             f"  windows of {info.window_s} s every {info.step_s} s, baseline "
             + (f"of {info.baseline_windows} windows" if info.baseline_windows else "none")]
    if info.n_trees is not None:
        nodes = "nodes" if info.version < 2 else "inner nodes"
        lines.append(f"  {info.n_trees} trees, {info.n_nodes} {nodes}, {info.n_leaves} distinct leaves")
    lines.append("  quantization (offset >> shift): "
                 + ", ".join(f"{o}>>{s}" for o, s in zip(info.offsets, info.shifts)))
    return "\n".join(lines)


DISTRIBUTION_KEY = bytes(KEY_SIZE)  # signs the shipped models in models/; `resign` before flashing


def resign(data: bytes, key: bytes, old_key: bytes | None = None) -> bytes:
    """The blob signed with `key` instead: checked first (CRC32, model id, and with `old_key`
    the old signature), then its HMAC replaced. `wears flash` re-signs the shipped models
    (signed with `DISTRIBUTION_KEY`) with the watch's own key.

    Example:
        >>> one_leaf = bytes.fromhex("0100000001000000" "ff000000" "0880")
        >>> data = build_blob(KIND_TREES, 7, 2, [0], [0], one_leaf, DISTRIBUTION_KEY)
        >>> read_blob(resign(data, b"k" * 32), b"k" * 32).signature_checked
        True
    """
    read_blob(data, old_key)
    body = bytes(data[:len(data) - B.MAC_SIZE])
    return body + hmac.new(key, body, "sha256").digest()


class BlobModel:
    """What every quantized model builds its blob from: `KIND`, `feature_spec`, `offsets_`,
    `shifts_`, `classes_`, `window` (window_s, step_s, baseline_windows: what the watch must
    compute the features with; zeros when unknown) and the kind's `payload` (bytes)."""

    KIND: int
    TOO_LARGE_HINT = ""
    window: tuple[int, int, int] = (0, 0, 0)
    feature_spec: int
    offsets_: np.ndarray
    shifts_: np.ndarray
    classes_: np.ndarray

    @property
    def payload(self) -> bytes:
        """The kind's payload (docs/model-blob.md); each kind defines it."""
        raise NotImplementedError

    @property
    def n_features(self) -> int:
        return len(self.offsets_)

    @property
    def n_classes(self) -> int:
        return len(self.classes_)

    @property
    def size_bytes(self) -> int:
        """Bytes of the blob, signature included."""
        return B.blob_size(self.n_features, len(self.payload))

    @property
    def model_id(self) -> int:
        """The id the watch reports in PREDICTION and STATUS packets for this model."""
        quant = self.offsets_.astype("<i4").tobytes() + self.shifts_.astype("u1").tobytes()
        return model_id(window_bytes(self.window) + quant + self.payload)

    def to_blob(self, key: bytes, max_bytes: int | None = B.MAX_BYTES) -> bytes:
        """The signed blob for a watch holding `key`.

        Raises:
            ModelBlobError: (E_TOO_LARGE) when it is larger than `max_bytes`, the most the
                watch accepts; None lifts the limit.
        """
        if max_bytes is not None and self.size_bytes > max_bytes:
            raise ModelBlobError(f"the blob would be {self.size_bytes} bytes, the watch takes at most "
                                 f"{max_bytes}{self.TOO_LARGE_HINT}", P.E_TOO_LARGE)
        return build_blob(self.KIND, self.feature_spec, self.n_classes, self.offsets_.tolist(),
                          self.shifts_.tolist(), self.payload, key, self.window)


def new_key() -> bytes:
    """A fresh random signing key (32 bytes) for one watch."""
    return os.urandom(KEY_SIZE)


def load_key(path: str | os.PathLike) -> bytes:
    """The signing key in `path`: the raw 32 bytes the watch keeps as `key.bin`."""
    key = Path(path).read_bytes()
    if len(key) != KEY_SIZE:
        raise WearsError(f"{path}: a signing key is {KEY_SIZE} raw bytes, this file has {len(key)}")
    return key


def save_key(path: str | os.PathLike, key: bytes) -> None:
    """Write `key` as a `key.bin` file readable only by its owner."""
    if len(key) != KEY_SIZE:
        raise ValueError(f"a signing key is {KEY_SIZE} bytes")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)


def _fail(reason: int, message: str) -> None:
    raise ModelBlobError(f"{message} ({P.REASONS[reason]})", reason)
