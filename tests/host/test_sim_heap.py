"""The virtual watch's heap accounting (wears.sim.heap, wears.sim.runner.sim_heap_bytes): the
pointer-width credit of the states after boot, measured in the MicroPython binary."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier

from watch.features import spec_for
from wears.blob import DISTRIBUTION_KEY, read_blob
from wears.errors import WearsError
from wears.paths import SHIMS, board_profile
from wears.export import quantize_forest
from wears.sim import heap
from wears.sim.runner import (compiled_tree, micropython_binary, micropython_path_compiled, pointer_width_bytes,
                              sim_heap_bytes)


@pytest.fixture(scope="module")
def mpy():
    return micropython_binary(), micropython_path_compiled()


def _forest_blob(nf: int, spec: int, trees: int) -> bytes:
    rng = np.random.default_rng(4)
    X = rng.integers(-20000, 20000, size=(800, nf))
    forest = ExtraTreesClassifier(n_estimators=trees, max_depth=6, random_state=0).fit(X, X[:, 0] > 0)
    return quantize_forest(forest, X, spec).to_blob(DISTRIBUTION_KEY)


def test_the_state_with_the_model_is_credited_its_objects_never_its_buffer_bytes(mpy):
    # Loading the model adds its modules, the model object and the engine rebuilt for its
    # window: their words halve on a 32-bit watch, their buffers (the model's arrays, the
    # engine's rings) do not, so the credit grows by less than half of what the state grew.
    pinetime = board_profile("pinetime")
    boot = heap.width_parts(pinetime, *mpy)
    with_model = heap.width_parts(pinetime, *mpy, state="model", model=heap.shipped_model(pinetime))
    assert with_model.kept > boot.kept and with_model.data > boot.data
    grown = with_model.credit - boot.credit
    assert 0 < grown < (with_model.kept - boot.kept) // 2, (boot, with_model)
    assert heap.width_bytes(pinetime, *mpy, model=True) == with_model.credit


def test_a_larger_model_adds_buffer_bytes_and_almost_no_credit(mpy):
    # Five times the trees: the model's arrays grow by kilobytes (in RAM or in flash, as the
    # firmware keeps them), its objects stay the same few; a credit that halved the arrays
    # would grow by half their size.
    pinetime = board_profile("pinetime")
    spec, nf = spec_for(False)
    small = heap.width_parts(pinetime, *mpy, state="model", model=_forest_blob(nf, spec, 3))
    large = heap.width_parts(pinetime, *mpy, state="model", model=_forest_blob(nf, spec, 15))
    assert large.credit - small.credit <= (large.kept - small.kept) // 8 + 64, (small, large)


def test_a_model_the_watch_refuses_cannot_be_measured(mpy):
    # The ESP32-S3's model needs gyroscope features the PineTime has not: the watch keeps no
    # model, and a credit measured so would not be the state with one.
    esp32 = board_profile("esp32s3-wrist")
    assert read_blob(heap.shipped_model(esp32), None).n_features != spec_for(False)[1]
    with pytest.raises(WearsError, match="did not load"):
        heap.width_bytes(board_profile("pinetime"), *mpy, model=heap.shipped_model(esp32))


def test_an_upload_session_runs_at_the_smallest_width_of_the_states_it_passes_through(mpy):
    # From the first MODEL_BEGIN the watch holds the upload's modules and its ModelUpload,
    # from the commit the model's state: the heapsize may credit neither more than it holds.
    pinetime = board_profile("pinetime")
    boot = heap.width_bytes(pinetime, *mpy)
    uploading = heap.width_bytes(pinetime, *mpy, upload=True)
    with_model = heap.width_bytes(pinetime, *mpy, model=True)
    assert boot < uploading and boot < with_model
    assert pointer_width_bytes(pinetime, upload=True) == min(uploading, with_model)
    assert pointer_width_bytes(pinetime) == boot and pointer_width_bytes(pinetime, True) == with_model
    # the heapsize grows by that width, and by the GC tables that cover it (about 1 %)
    added = sim_heap_bytes(pinetime, upload=True) - sim_heap_bytes(pinetime)
    assert min(uploading, with_model) - boot <= added <= (min(uploading, with_model) - boot) * 102 // 100 + 32


def test_a_board_without_a_shipped_model_is_credited_its_boot_without_one(mpy):
    # Its model's objects then count at their 64-bit size: conservative.
    pinetime = {**board_profile("pinetime"), "id": "no-such-board"}
    assert heap.shipped_model(pinetime) is None
    assert heap.width_bytes(pinetime, *mpy, model=True) == heap.width_bytes(pinetime, *mpy)


def test_a_model_on_baseline_features_is_measured_with_the_baseline_it_loads(mpy):
    # Such a model makes the watch import watch.baseline at boot: measured among the modules
    # (its code would otherwise count as state), its calibration among the watch's objects.
    pinetime = board_profile("pinetime")
    spec, nf = spec_for(False)
    plain = heap.width_parts(pinetime, *mpy, state="model", model=_forest_blob(nf, spec, 3))
    on_baseline = heap.width_parts(pinetime, *mpy, state="model", model=_forest_blob(nf, spec_for(False, True)[0], 3))
    assert on_baseline.credit > plain.credit and on_baseline.kept > plain.kept


_DROP_SCRIPT = """
import gc, struct, sys, uctypes
import sim_frozen
sim_frozen.install("pkg.late=" + SOURCE)
import pkg.late

first = pkg.late
size = first.size
del sys.modules["pkg.late"]
del pkg.late
from pkg import late  # executed again, into a fresh module

late.BUF = bytearray(3)


def word(address, index):
    return struct.unpack("P", uctypes.bytearray_at(address + index * 8, 8))[0]


# the compiled code's context, which sim_frozen holds for good: whose globals does it hold?
held = word(word(word(id(sim_frozen._code["pkg.late"][0]), 1), 1), 1)
print("DROP", size(), first.Table().size(), late.size(), late.Table().size(),
      held in (id(first.__dict__), id(late.__dict__)))
"""


def test_a_frozen_module_the_firmware_drops_can_free_its_state_and_keeps_its_code(tmp_path):
    # On a frozen watch, a module dropped from sys.modules (and its package) frees its RAM
    # state; its code stays in flash. The sim_frozen shim holds the compiled code (credited as
    # flash) but not the module's dictionary, so the GC can free it, and each import runs in
    # a context of its own: the first module's functions keep their globals after the second
    # import (with one shared context they would read the second module's).
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    source = pkg / "late.py"
    source.write_text("import gc\nBUF = bytearray(40000)\ngc.collect()  # a collection while the body runs\n"
                      "def size():\n    return len(BUF)\n"
                      "class Table:\n    def size(self):\n        return size()\n")
    script = tmp_path / "drop.py"
    script.write_text(f"SOURCE = {str(source)!r}\n" + _DROP_SCRIPT)
    env = {**os.environ, "MICROPYPATH": f"{compiled_tree(SHIMS) or SHIMS}:{tmp_path}"}
    proc = subprocess.run([micropython_binary(), "-X", "heapsize=400000", str(script)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("DROP ")), None)
    assert line, proc.stdout + proc.stderr
    assert line.split()[1:] == ["40000", "40000", "3", "3", "False"], line


def test_a_profile_that_cannot_feed_its_boards_model_is_credited_its_boot(mpy):
    # The XIAO's profile without its gyroscope: the shipped model wants gyroscope features, the
    # watch would refuse it, so no state with it exists to credit.
    xiao = board_profile("xiao-nrf52840-sense")
    imu = {k: v for k, v in xiao["sensors"]["imu"].items() if k != "gyro_range_dps"}
    no_gyro = {**xiao, "sensors": {**xiao["sensors"], "imu": imu}}
    assert heap.shipped_model(xiao) is not None and heap.shipped_model(no_gyro) is None
    assert heap.width_bytes(no_gyro, *mpy, model=True) == heap.width_bytes(no_gyro, *mpy)
