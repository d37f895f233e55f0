"""The int8 MLP runtime runs the worked example of docs/model-blob.md as documented, its viper
and plain paths agree bit for bit (the limb arithmetic against the exact 64-bit formula), it
allocates nothing per inference, and the loader refuses what the hot loop cannot run."""

import struct
import micropython
from array import array

from watch import loader, mlp
from wire import blob
from wire import protocol as p
from mp_blobs import documented_example, flash, in_flash, sign as _sign

KEY = bytes(range(32))


def _example():
    _, data, cases = documented_example("mlp-example")
    # words after the probabilities: "logits", "a,b"
    return data, [(x, label, proba, [int(v) for v in extra[1].split(",")]) for x, label, proba, extra in cases]


BLOB, CASES = _example()


def _load(data=BLOB, viper=True, key=KEY, n_features=2):
    return flash().load(data, key, 1, n_features, viper=viper)


def _reason(data):
    try:
        _load(data)
    except loader.ModelError as e:
        return e.reason
    return p.OK


def _one_layer(n_in, weight, bias, multiplier, shift, in_zp=0, out_zp=0, lo=-128, hi=127, n_out=1):
    """A signed one-layer MLP blob (n_in features, offsets 0, shifts 0), every weight `weight`."""
    n_w = n_in * n_out
    payload = (struct.pack(blob.MLP_HEADER, 1, 0, 0)
               + struct.pack(blob.MLP_LAYER, n_in, n_out, in_zp, out_zp, lo, hi, shift, 0, multiplier)
               + bytes([weight & 0xFF]) * n_w + struct.pack("<i", bias) * n_out
               + struct.pack("<H", 65535) * blob.MLP_TABLE_SIZE)
    head = struct.pack(blob.HEADER, blob.MAGIC, 1, blob.KIND_MLP_INT8, 1, n_in, n_out, 0, len(payload), 0)
    return _sign(head + bytes(4 * n_in) + bytes(n_in) + payload, KEY)


@in_flash
def test_example_predictions_and_logits_match_the_document_on_both_paths():
    assert len(CASES) == 4
    for viper in (True, False):
        m = _load(viper=viper)
        assert m.viper == viper and m.kind == blob.KIND_MLP_INT8 and m.n_layers == 2
        proba = bytearray(2)
        for x, label, expected, logits in CASES:
            got = m.predict(array("i", x), proba)
            assert (got, list(proba), m.logits()) == (label, expected, logits), (viper, x, got, m.logits())


@in_flash
def test_limb_arithmetic_equals_the_64_bit_requantization_at_the_extremes():
    # One input of 127 times weight 127 (minus zero point -128: 255) plus a bias sweeps the
    # accumulator to within the bound the loader allows, for extreme multipliers and shifts.
    span = 127 * 255
    limit = 0x3FFFFFFF - 128 * 255  # the loader's bound for one input
    checked = 0
    for multiplier in (0, 1, 0x40000000, 0x5A827999, 0x7FFFFFFF):
        for shift in (0, -1, -7, -30, -31):
            for bias in (-limit, -limit + 1, -1 - span, -span, 0, 1, 12345, limit - 1, limit):
                for sign in (1, -1):
                    path = flash().write("limb.wbl", _one_layer(1, sign * 127, bias, multiplier, shift, in_zp=-128))
                    fast, slow = loader.load(path, KEY, 1, 1), loader.load(path, KEY, 1, 1, viper=False)
                    x = array("i", [127])
                    fast.predict(x, bytearray(1))
                    slow.predict(x, bytearray(1))
                    acc = bias + sign * 127 * 255
                    want = mlp.requantize(acc, multiplier, -shift)
                    want = -128 if want < -128 else 127 if want > 127 else want
                    assert fast.logits() == slow.logits() == [want], (multiplier, shift, bias, sign)
                    fast.close()
                    slow.close()
                    checked += 1
    assert checked == 5 * 5 * 9 * 2


@in_flash
def test_viper_and_plain_paths_agree_on_random_inputs():
    fast, slow = _load(), _load(viper=False)
    pa, pb = bytearray(2), bytearray(2)
    x = array("i", [0, 0])
    seed = 99
    for _ in range(3000):
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        x[0] = (seed & 0xFFFF) * 3 - 98000
        x[1] = (seed >> 15) - 32768
        assert fast.predict(x, pa) == slow.predict(x, pb) and pa == pb and fast.logits() == slow.logits()


@in_flash
def test_predict_allocates_nothing_on_either_path():
    for viper in (True, False):
        m = _load(viper=viper)
        x = array("i", [1200, -20])
        proba = bytearray(2)
        micropython.heap_lock()
        try:
            for v in range(-300, 300):
                x[1] = v * 7
                m.predict(x, proba)
        finally:
            micropython.heap_unlock()


@in_flash
def test_loader_refuses_what_the_hot_loop_cannot_run():
    ok = _one_layer(1, 1, 0, 0x40000000, -1)
    assert _load(ok, n_features=1).n_classes == 1
    for bad in (_one_layer(1, 1, 0x3FFFFFFF, 0x40000000, -1),  # accumulator bound
                _one_layer(1, 1, 0, 0x40000000, 1),  # a left shift
                _one_layer(1, 1, 0, 0x40000000, -32),  # below -31
                _one_layer(1, 1, 0, -5, -1),  # negative multiplier
                _one_layer(1, 1, 0, 0x40000000, -1, lo=10, hi=0)):  # empty activation range
        try:
            _load(bad, n_features=1)
        except loader.ModelError as e:
            assert e.reason == p.E_UNSUPPORTED_KIND
        else:
            raise AssertionError("loaded an MLP the runtime cannot run")


@in_flash
def test_truncated_mlp_payload_is_rejected():
    body = bytearray(BLOB[:-blob.TRAILER_SIZE])
    struct.pack_into("<I", body, 12, struct.unpack_from("<I", body, 12)[0] - 2)  # payload 2 bytes short
    assert _reason(_sign(bytes(body[:-2]), KEY)) == p.E_TRUNCATED
    assert _reason(BLOB[:-1]) == p.E_TRUNCATED


@in_flash
def test_the_weights_stay_in_flash_and_a_changed_file_gives_a_reason():
    x = array("i", CASES[0][0])
    proba = bytearray(2)
    body = bytearray(BLOB[:-blob.TRAILER_SIZE])
    body[-1] ^= 1  # the exp table's last entry: another valid blob, another model id
    cut = len(BLOB) - blob.TRAILER_SIZE - 2 * blob.MLP_TABLE_SIZE  # the exp table and trailer gone
    for viper in (True, False):
        for data, reason in ((_sign(bytes(body), KEY), p.E_BAD_CRC), (BLOB[:cut], p.E_TRUNCATED)):
            path = flash().write("changing.wbl", BLOB)
            m = loader.load(path, KEY, 1, 2, viper=viper)
            assert m.predict(x, proba) == CASES[0][1]
            flash().write("changing.wbl", data)
            micropython.heap_lock()
            try:
                got = m.predict(x, proba)
            finally:
                micropython.heap_unlock()
            assert got == -reason, (viper, reason, got)
            m.close()
