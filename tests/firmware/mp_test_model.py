"""The watch runs the worked example of docs/model-blob.md as documented, rejects broken blobs
with the right reason, and an upload replaces the model only when the new one is valid."""

import os
import struct
import hashlib
import micropython
from array import array
from binascii import crc32

from watch import loader
from wire import blob
from wire import protocol as p
from watch.hmac_sha256 import HmacSha256, equal, hmac_sha256
from mp_blobs import FlashDir as _Dir, documented_example, flash, in_flash, sign


KEY, BLOB, CASES = documented_example()
CASES = [case[:3] for case in CASES]
_, BLOB_V1, CASES_V1 = documented_example("blob-example-v1")
CASES_V1 = [case[:3] for case in CASES_V1]
SPEC = 1
N_FEATURES = 2


def _sign(body, key=KEY):
    return sign(body, key)


def _patched(offset, value, data=BLOB):
    """A blob (the example) with byte(s) before the trailer changed, signed again."""
    body = bytearray(data[:-blob.TRAILER_SIZE])
    if isinstance(value, int):
        value = bytes([value])
    body[offset:offset + len(value)] = value
    return _sign(body)


def _reason(data, key=KEY, spec=SPEC, n_features=N_FEATURES, max_bytes=blob.MAX_BYTES):
    with _Dir() as d:
        path = d.write("model.wbl", data)
        try:
            loader.load(path, key, spec, n_features, max_bytes)
        except loader.ModelError as e:
            return e.reason
    return p.OK


def _load(data=BLOB, viper=True):
    return flash().load(data, KEY, SPEC, N_FEATURES, viper=viper)


@in_flash
def test_example_blob_loads_with_its_documented_header():
    m = _load()
    assert m.model_id == 0xA82B1E44 and m.kind == blob.KIND_TREES and m.feature_spec == 1
    assert (m.n_features, m.n_classes, m.n_trees, m.n_nodes) == (2, 2, 2, 2)
    assert (m.window_s, m.step_s, m.baseline_windows) == (60, 5, 0)


@in_flash
def test_example_predictions_match_the_document_on_both_paths():
    assert len(CASES) == 4
    for viper in (True, False):
        m = _load(viper=viper)
        assert m.viper == viper, "viper unavailable in MicroPython"
        proba = bytearray(2)
        for x, label, expected in CASES:
            got = m.predict(array("i", x), proba)
            assert got == label and list(proba) == expected, (viper, x, got, list(proba))


@in_flash
def test_a_version_1_blob_still_loads_and_predicts_the_same():
    assert CASES_V1 == CASES
    for viper in (True, False):
        m = _load(BLOB_V1, viper=viper)
        assert m.model_id == 0x5E34E9F1 and (m.window_s, m.step_s, m.baseline_windows) == (0, 0, 0)
        proba = bytearray(2)
        x = array("i", [0, 0])
        for xs, label, expected in CASES_V1:
            x[0], x[1] = xs
            micropython.heap_lock()
            try:
                got = m.predict(x, proba)
            finally:
                micropython.heap_unlock()
            assert got == label and list(proba) == expected, (viper, xs, got, list(proba))
    body = bytearray(BLOB_V1[:-blob.TRAILER_SIZE])
    body[60] = 0  # version 1: node 0's right child is itself
    assert _reason(_sign(body)) == p.E_UNSUPPORTED_KIND


@in_flash
def test_viper_and_python_paths_agree_on_extreme_and_random_inputs():
    fast, slow = _load(viper=True), _load(viper=False)
    values = [-2147483648, -0x20000001, -0x20000000, -131122, -7, -6, 0, 999, 1000, 1001, 131021,
              0x1FFFFFFF, 0x20000000, 2147483647]
    pa, pb = bytearray(2), bytearray(2)
    x = array("i", [0, 0])
    seed = 12345
    n = 0
    for i in range(len(values) ** 2 + 2000):
        if i < len(values) ** 2:
            x[0], x[1] = values[i % len(values)], values[i // len(values)]
        else:
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            x[0] = (seed & 0xFFFF) - 31768
            x[1] = (seed >> 16) - 16384
        a, b = fast.predict(x, pa), slow.predict(x, pb)
        assert a == b and pa == pb, (list(x), a, b, list(pa), list(pb))
        n += 1
    assert n > 2000


@in_flash
def test_predict_allocates_nothing_on_either_path():
    for viper in (True, False):
        m = _load(viper=viper)
        x = array("i", [1200, -20])
        proba = bytearray(2)
        label = -1
        micropython.heap_lock()
        try:
            for v in range(-300, 300):
                x[1] = v
                label = m.predict(x, proba)
        finally:
            micropython.heap_unlock()
        assert label == 1


@in_flash
def test_features_beyond_30_bits_are_clamped_before_quantizing():
    # Offsets near the clamp bounds and thresholds beyond q(X_MAX) / q(X_MIN) make the clamp
    # visible: without it, x = +-2**31 would quantize to +-32768 and take the other branch.
    high = _patched(64, struct.pack("<H", blob.BIAS + 5000), _patched(28, struct.pack("<i", blob.X_MAX - 1000)))
    low = _patched(64, struct.pack("<H", blob.BIAS - 5000), _patched(28, struct.pack("<i", blob.X_MIN + 1000)))
    proba = bytearray(2)
    for viper in (True, False):
        m = _load(high, viper=viper)
        assert m.predict(array("i", [2147483647, 0]), proba) == 0 and list(proba) == [192, 64], viper
        assert m.predict(array("i", [blob.X_MAX, 0]), proba) == 0, viper
        m = _load(low, viper=viper)
        assert m.predict(array("i", [-2147483648, 0]), proba) == 1 and list(proba) == [96, 159], viper
        assert m.predict(array("i", [blob.X_MIN, 0]), proba) == 1, viper


@in_flash
def test_a_short_probability_buffer_is_refused_before_running():
    # predict writes proba, so it checks its length; x holds what the caller promised load
    # (n_features, checked against the blob), and the fast path does not check it again.
    for viper in (True, False):
        m = _load(viper=viper)
        proba = bytearray([77])
        try:
            m.predict(array("i", [1, 2]), proba)
        except IndexError:
            assert proba[0] == 77, viper  # refused before writing anything
            continue
        raise AssertionError("ran with 1 probability for 2 classes (viper %s)" % viper)


def test_truncated_or_overlong_blob_is_rejected_as_truncated():
    for n in (0, 3, 19, 20, 60, len(BLOB) - 1):
        assert _reason(BLOB[:n]) == p.E_TRUNCATED, n
    assert _reason(BLOB + b"\x00") == p.E_TRUNCATED


def test_flipped_byte_fails_the_crc():
    for at in (16, 25, 50, 75, len(BLOB) - 36):
        data = bytearray(BLOB)
        data[at] ^= 0x01
        assert _reason(bytes(data)) == p.E_BAD_CRC, at


def test_wrong_key_or_flipped_hmac_fails_the_signature():
    assert _reason(BLOB, key=bytes(32)) == p.E_BAD_SIGNATURE
    assert _reason(BLOB, key=KEY[:-1]) == p.E_BAD_SIGNATURE
    assert _reason(_sign(BLOB[:-blob.TRAILER_SIZE], key=b""), key=b"") == p.E_BAD_SIGNATURE
    data = bytearray(BLOB)
    data[-1] ^= 0x80
    assert _reason(bytes(data)) == p.E_BAD_SIGNATURE


def test_wrong_magic_and_version_are_rejected():
    assert _reason(b"WMDX" + BLOB[4:]) == p.E_BAD_MAGIC
    assert _reason(_patched(0, ord("X"))) == p.E_BAD_MAGIC
    assert _reason(_patched(blob.VERSION_OFFSET, 3)) == p.E_BAD_VERSION
    assert _reason(_patched(blob.VERSION_OFFSET, 1)) == p.E_TRUNCATED  # 8 bytes more than version 1 has


def test_unknown_kind_or_a_tree_payload_labelled_mlp_is_unsupported():
    assert _reason(_patched(5, blob.KIND_MLP_INT8)) == p.E_UNSUPPORTED_KIND
    assert _reason(_patched(5, 0)) == p.E_UNSUPPORTED_KIND
    assert _reason(_patched(5, 3)) == p.E_UNSUPPORTED_KIND


def test_other_feature_set_is_a_feature_mismatch():
    assert _reason(BLOB, spec=2) == p.E_FEATURE_MISMATCH
    assert _reason(BLOB, n_features=3) == p.E_FEATURE_MISMATCH


def test_blob_over_the_size_limit_is_too_large():
    assert _reason(BLOB, max_bytes=len(BLOB) - 1) == p.E_TOO_LARGE
    assert _reason(BLOB, max_bytes=len(BLOB)) == p.OK


def test_signed_blob_with_a_wrong_model_id_is_rejected():
    body = bytearray(BLOB[:-blob.TRAILER_SIZE])
    body[16] ^= 1
    body += struct.pack("<I", crc32(body) & 0xFFFFFFFF)
    assert _reason(bytes(body) + hmac_sha256(KEY, body)) == p.E_BAD_CRC


def test_signed_blob_with_a_broken_tree_is_not_run():
    # Offsets in the example (docs/model-blob.md): counts at 38, leaf rows at 46, roots at 58,
    # node 0 at 62 (feature, threshold, left, right), node 1 at 70.
    assert _patched(0, ord("W")) == BLOB  # re-signing an unchanged body gives the same blob
    assert _reason(_patched(68, b"\x18\x00")) == p.E_UNSUPPORTED_KIND  # node 0's right child is itself
    assert _reason(_patched(66, b"\x1a\x00")) == p.E_UNSUPPORTED_KIND  # a reference between nodes
    assert _reason(_patched(66, b"\x2c\x00")) == p.E_UNSUPPORTED_KIND  # past the last node
    assert _reason(_patched(66, b"\x0a\x00")) == p.E_UNSUPPORTED_KIND  # inside a leaf row
    assert _reason(_patched(66, b"\x04\x00")) == p.E_UNSUPPORTED_KIND  # inside the counts
    assert _reason(_patched(66, b"\x14\x00")) == p.E_UNSUPPORTED_KIND  # the roots, not a leaf row
    assert _reason(_patched(58, b"\x30\x00")) == p.E_UNSUPPORTED_KIND  # a root past the last node
    assert _reason(_patched(62, 7)) == p.E_UNSUPPORTED_KIND  # feature 7 of 2
    assert _reason(_patched(47, 1)) == p.E_UNSUPPORTED_KIND  # a leaf value of 511
    assert _reason(_patched(44, 1)) == p.E_UNSUPPORTED_KIND  # the reserved count
    assert _reason(_patched(37, 40)) == p.E_UNSUPPORTED_KIND  # shift 40
    assert _reason(_patched(40, 7)) == p.E_TRUNCATED  # 7 inner nodes do not fit the payload length


def test_hmac_matches_rfc4231_vectors_whole_and_chunked():
    cases = (
        (b"\x0b" * 20, b"Hi There",
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        (b"Jefe", b"what do ya want for nothing?",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    )
    for key, msg, expected in cases:
        assert hmac_sha256(key, msg) == bytes.fromhex(expected), expected
        assert hmac_sha256(key, [msg[:5], memoryview(msg)[5:9], msg[9:]]) == bytes.fromhex(expected)
        h = HmacSha256(key)
        for i in range(len(msg)):
            h.update(msg[i:i + 1])
        assert equal(h.digest(), bytes.fromhex(expected))
    assert not equal(b"ab", b"ac") and not equal(b"ab", b"abc")


@in_flash
def test_a_loaded_model_keeps_its_trees_in_flash_and_little_in_ram():
    # The PineTime's shipped forest (20 trees, 336 nodes, 3170 bytes): RAM holds its counts,
    # scaling, sums, roots and one node buffer for the largest tree, not its nodes.
    import gc

    path = os.getenv("WEARS_REPO") + "/models/pinetime.wbl"  # signed with the distribution key
    size = os.stat(path)[6]
    gc.collect()
    before = gc.mem_alloc()
    m = loader.load(path, bytes(32), 8, 18)
    gc.collect()
    ram = gc.mem_alloc() - before
    try:
        assert (m.n_trees, m.n_nodes) == (20, 336)
        assert ram < size // 2, ram  # (64-bit objects: less on a 32-bit watch); it held all of it and more
        x = array("i", [1000 * i for i in range(18)])
        proba = bytearray(2)
        micropython.heap_lock()
        try:
            label = m.predict(x, proba)
        finally:
            micropython.heap_unlock()
        assert label in (0, 1) and abs(proba[0] + proba[1] - 255) <= 1
    finally:
        m.close()


@in_flash
def test_a_file_that_changed_under_a_loaded_model_gives_a_reason_never_a_wild_walk():
    # Offsets in the example: node 0 at 62 (feature, threshold, left, right), leaf row 1 at 50.
    # x = [1200, -20] takes node 0's right branch into leaf row 1 (see the document).
    other = _patched(46, 0x80)  # another valid blob: leaf row 0 changed, so another model id
    changes = ((other, p.E_BAD_CRC),
               (BLOB[:60], p.E_TRUNCATED),  # cut short (a write under way)
               (BLOB[:68] + b"\x18\x00" + BLOB[70:], p.E_BAD_CRC),  # node 0's right child: itself
               (BLOB[:62] + b"\x07" + BLOB[63:], p.E_BAD_CRC),  # feature 7 of 2
               (BLOB[:51] + b"\x01" + BLOB[52:], p.E_BAD_CRC))  # a leaf value of 320
    x = array("i", [1200, -20])
    proba = bytearray(2)
    for viper in (True, False):
        for data, reason in changes:
            path = flash().write("changing.wbl", BLOB)
            m = loader.load(path, KEY, SPEC, N_FEATURES, viper=viper)
            assert m.predict(x, proba) == 1
            flash().write("changing.wbl", data)  # the same file, rewritten under the model
            micropython.heap_lock()
            try:
                got = m.predict(x, proba)
            finally:
                micropython.heap_unlock()
            assert got == -reason, (viper, reason, got)
            m.close()
            assert m.predict(x, proba) == -p.E_TRUNCATED  # closed: no file to read
