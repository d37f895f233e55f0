"""The host builds the documented blob byte for byte, checks blobs like the watch with the same
reason codes, and the watch's HMAC equals CPython's hmac."""

import binascii
import re
import hmac
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from watch import blob as B
from watch import protocol as P
from watch.hmac_sha256 import HmacSha256, equal, hmac_sha256
from wears import blob as WB
from wears.errors import ModelBlobError, WearsError
from wears.paths import FIRMWARE
from wears.export import QuantizedForest

DOC = Path(__file__).resolve().parents[2] / "docs" / "model-blob.md"


def _doc_example(block="blob-example"):
    lines = DOC.read_text().split(f"```{block}\n", 1)[1].split("```", 1)[0].splitlines()
    fields = dict(line.split(" ", 1) for line in lines if not line.startswith("predict"))
    cases = []
    for line in lines:
        if line.startswith("predict "):
            x, out = line[8:].split(" -> ")
            label, proba = out.split()
            cases.append(([int(v) for v in x.split(",")], int(label), [int(v) for v in proba.split(",")]))
    return bytes.fromhex(fields["key"]), bytes.fromhex(fields["blob"]), cases


KEY, BLOB, CASES = _doc_example()
_, BLOB_V1, CASES_V1 = _doc_example("blob-example-v1")
EXAMPLE = QuantizedForest(feature_spec=1, classes=[0, 1], offsets=[1000, -50], shifts=[0, 2], roots=[0, 3],
                          feature=[0, 255, 255, 1, 255, 255], threshold=[0, 0, 0, 10, 0, 0], right=[2, 0, 1, 5, 1, 2],
                          leaf_proba=[[255, 0], [64, 191], [128, 127]], window=(60, 5, 0))


def _resign(body: bytes, key: bytes = KEY) -> bytes:
    body = bytearray(body)
    body[16:20] = WB.model_id(bytes(body[B.HEADER_SIZE:])).to_bytes(4, "little")
    body += struct.pack("<I", binascii.crc32(body))
    return bytes(body) + hmac.new(key, body, "sha256").digest()


def _patched(offset: int, value: int) -> bytes:
    body = bytearray(BLOB[:-B.TRAILER_SIZE])
    body[offset] = value
    return _resign(bytes(body))


def _reason(data: bytes, **kwargs) -> int:
    with pytest.raises(ModelBlobError) as e:
        WB.read_blob(data, **kwargs)
    return e.value.reason


def test_exporter_builds_the_documented_example_byte_for_byte():
    assert EXAMPLE.to_blob(KEY) == BLOB
    assert EXAMPLE.model_id == 0xA82B1E44


def test_a_version_1_blob_still_reads_as_the_same_forest():
    info = WB.read_blob(BLOB_V1, KEY, feature_spec=1, n_features=2)
    assert (info.version, info.model_id, info.n_nodes, info.window_s, info.step_s) == (1, 0x5E34E9F1, 6, 0, 0)
    old = QuantizedForest.from_blob(BLOB_V1, KEY)
    for name in ("roots_", "feature_", "threshold_", "right_", "leaf_proba_", "offsets_", "shifts_"):
        assert getattr(old, name).tolist() == getattr(EXAMPLE, name).tolist(), name
    assert CASES_V1 == CASES
    back = QuantizedForest.from_blob(BLOB, KEY)
    assert back.window == (60, 5, 0) and back.to_blob(KEY) == BLOB


def test_window_settings_are_stored_checked_and_reported():
    info = WB.read_blob(BLOB, KEY)
    assert (info.window_s, info.step_s, info.baseline_windows) == (60, 5, 0)
    assert "windows of 60 s every 5 s, baseline none" in WB.describe(info)
    data = WB.build_blob(B.KIND_TREES, 5, 2, [1000, -50], [0, 2], EXAMPLE.payload, KEY, (30, 5, 12))
    assert WB.read_blob(data).baseline_windows == 12 and WB.model_id(data[20:-36]) != EXAMPLE.model_id
    with pytest.raises(ValueError, match="u16"):
        WB.build_blob(B.KIND_TREES, 5, 2, [0], [0], EXAMPLE.payload, KEY, (70000, 5, 0))


def test_documented_predictions_match_the_host_emulation():
    X = np.array([x for x, _, _ in CASES])
    assert EXAMPLE.predict(X).tolist() == [label for _, label, _ in CASES]
    assert EXAMPLE.predict_proba_u8(X).tolist() == [proba for _, _, proba in CASES]


def test_read_blob_reports_the_header_of_a_valid_blob():
    info = WB.read_blob(BLOB, KEY, feature_spec=1, n_features=2, max_bytes=B.MAX_BYTES)
    assert (info.version, info.kind, info.feature_spec, info.n_features, info.n_classes) == (2, 1, 1, 2, 2)
    assert (info.payload_length, info.model_id, info.size, info.crc) == (40, 0xA82B1E44, 114, 0xE9372A38)
    assert (info.offsets, info.shifts, info.n_trees, info.n_nodes, info.n_leaves) == ((1000, -50), (0, 2), 2, 2, 3)
    assert info.signature_checked and not WB.read_blob(BLOB).signature_checked


def test_read_blob_rejects_each_fault_with_the_watchs_reason():
    flipped = bytearray(BLOB)
    flipped[50] ^= 1
    assert _reason(BLOB, max_bytes=113) == P.E_TOO_LARGE
    assert _reason(BLOB[:10]) == P.E_TRUNCATED
    assert _reason(BLOB[:-1]) == P.E_TRUNCATED
    assert _reason(BLOB + b"\0") == P.E_TRUNCATED
    assert _reason(b"WMDX" + BLOB[4:]) == P.E_BAD_MAGIC
    assert _reason(_patched(4, 3)) == P.E_BAD_VERSION
    assert _reason(_patched(4, 1)) == P.E_TRUNCATED  # read as version 1: 8 bytes too many
    assert _reason(bytes(flipped)) == P.E_BAD_CRC
    assert _reason(BLOB, key=bytes(32)) == P.E_BAD_SIGNATURE
    assert _reason(_patched(5, 9)) == P.E_UNSUPPORTED_KIND
    assert _reason(BLOB, feature_spec=2) == P.E_FEATURE_MISMATCH
    assert _reason(BLOB, n_features=3) == P.E_FEATURE_MISMATCH
    assert _reason(_patched(40, 7)) == P.E_TRUNCATED  # inner-node count does not fit the payload
    body = bytearray(BLOB[:-B.TRAILER_SIZE])
    body[16] ^= 1
    body += struct.pack("<I", binascii.crc32(body))
    assert _reason(bytes(body) + hmac.new(KEY, body, "sha256").digest()) == P.E_BAD_CRC  # wrong model id


def test_error_messages_name_the_fault():
    with pytest.raises(ModelBlobError, match=r"114 bytes, the header declares 115 \(truncated\)"):
        WB.read_blob(_patched(12, 41))
    with pytest.raises(WearsError, match="bad signature"):
        WB.read_blob(BLOB, bytes(32))


def test_from_blob_refuses_a_signed_blob_with_a_broken_tree():
    with pytest.raises(ModelBlobError) as e:
        QuantizedForest.from_blob(_patched(68, 24))  # node 0's right child is itself
    assert e.value.reason == P.E_UNSUPPORTED_KIND


def test_describe_names_kind_id_and_signature():
    text = WB.describe(BLOB, KEY)
    assert "tree ensemble, model id a82b1e44" in text and "signature verified" in text
    assert "2 trees, 2 inner nodes" in text and "1000>>0, -50>>2" in text
    assert "2 trees, 6 nodes" in WB.describe(BLOB_V1)
    assert "not checked" in WB.describe(BLOB)


def test_keys_are_32_random_bytes_and_round_trip_through_a_file(tmp_path):
    a, b = WB.new_key(), WB.new_key()
    assert len(a) == 32 and a != b
    WB.save_key(tmp_path / "key.bin", a)
    assert WB.load_key(tmp_path / "key.bin") == a
    assert (tmp_path / "key.bin").stat().st_mode & 0o077 == 0
    (tmp_path / "bad.bin").write_text(a.hex())
    with pytest.raises(WearsError, match="32 raw bytes"):
        WB.load_key(tmp_path / "bad.bin")


@settings(max_examples=150, deadline=None)
@given(key=st.binary(max_size=200), msg=st.binary(max_size=600), cuts=st.lists(st.integers(0, 600), max_size=5))
def test_watch_hmac_equals_cpython_hmac(key, msg, cuts):
    expected = hmac.new(key, msg, "sha256").digest()
    assert hmac_sha256(key, msg) == expected
    bounds = [0, *sorted(min(c, len(msg)) for c in cuts), len(msg)]
    assert hmac_sha256(key, [msg[a:b] for a, b in zip(bounds, bounds[1:])]) == expected
    h = HmacSha256(key)
    h.update(memoryview(msg))
    assert equal(h.digest(), expected)


def test_digest_comparison_sees_every_byte():
    d = bytes(range(32))
    assert equal(d, bytes(d))
    for i in range(32):
        assert not equal(d, d[:i] + bytes([d[i] ^ 1]) + d[i + 1:])
    assert not equal(d, d[:31])


def test_the_blob_module_mirrors_the_protocol_reason_codes():
    for name in ("OK", "E_TRUNCATED", "E_BAD_MAGIC", "E_BAD_VERSION", "E_BAD_CRC", "E_BAD_SIGNATURE",
                 "E_UNSUPPORTED_KIND", "E_FEATURE_MISMATCH", "E_TOO_LARGE"):
        assert getattr(B, name) == getattr(P, name), name


def test_the_model_modules_mirror_the_blob_constants_they_fold():
    # watch.blob keeps these private on a watch (out of its dictionary); watch.model, its
    # loader, watch.mlp and their plain twins fold their own copies
    for module, count in (("model.py", 6), ("loader.py", 8), ("mlp.py", 5), ("trees_plain.py", 5), ("mlp_plain.py", 4)):
        source = (FIRMWARE / "watch" / module).read_text()
        mirrored = re.findall(r"^_((?:E_[A-Z_]+|KIND_\w+|X_MIN|X_MAX|BIAS)) = const\((-?0?x?[0-9A-Fa-f]+)\)", source, re.M)
        assert len(mirrored) == count, module
        for name, value in mirrored:
            assert getattr(B, name) == int(value, 0), (module, name)


def test_the_upload_module_mirrors_the_protocol_reason_codes():
    source = (FIRMWARE / "watch" / "upload.py").read_text()
    mirrored = re.findall(r"^_((?:OK|E_[A-Z_]+)) = const\((\d+)\)", source, re.M)
    assert len(mirrored) == 7
    for name, value in mirrored:
        assert getattr(P, name) == int(value), name
