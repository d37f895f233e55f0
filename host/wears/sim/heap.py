"""What the virtual watch itself costs in the MicroPython heap, measured, so that a board's
firmware runs at its own heap budget and not a guess above it.

Two costs are added to a board's `heap_budget_bytes` for `-X heapsize`:
- the shims: on a real watch `machine`, `bluetooth`/`ubluepy` and the sensors are C code and
  hardware, costing the heap nothing; here they are Python. Measured by importing them and
  building what they build at boot (the bus with the board's sensor models, the radio and the
  attribute table the firmware's radio registers, which the stack holds on a watch);
- for a profile with `"frozen": true`, what freezing moves out of the heap: frozen into the
  image, a module's bytecode, constants, interned names and code structures stay in flash;
  its globals, functions, classes and whatever its body builds are made in RAM either way.
  Measured per board as the heap the modules it imports at boot take when loaded from their
  `.mpy` files, minus the heap their bodies take when executed again from already compiled
  code (what stays in RAM when frozen). The modules such a board imports after boot (the
  model's without a model in the flash, the upload's, the baseline's) are compiled at boot by
  the sim_frozen shim, which then executes them into their modules when the firmware imports
  them, as a frozen import does: what the compiled code holds (bytecode and names) is credited,
  their RAM state counts when it is made.
A third, the pointer width (`width_bytes`), is what the 64-bit binary's wider objects take
beyond the 32-bit watch's, measured per state of the firmware: the boot without a model, the
state with the board's model, an upload under way (wears.sim.runner.pointer_width_bytes says
which a session gets). A fixed margin covers the heap's fragmentation around these extra blocks.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import WearsError
from ..paths import FIRMWARE

# Fragmentation the shims cause: loaded first (sim_boot) their own blocks sit below the
# firmware's, but what they allocate while running (the serial link's reads, the radio bridge)
# lands among the firmware's blocks. 8 KB sufficed until the firmware passed 75 KB; an upload
# on the serial link (modules imported late into a heap the UART shim had split) needs 8 to
# 12 KB. It had been raised to 32 KB, next to a stated 16 KB overrun, while the firmware
# outgrew its budgets. The bench's peak_heap is live heap: no margin in it.
MARGIN = 16 * 1024


def table_bytes(heap_bytes: int, block_bytes: int) -> int:
    """The GC's own tables in a heap of `heap_bytes` (MicroPython's gc_init): 2 bits of
    allocation table and 1 bit of finaliser table per block, taken from the heap area, so
    `heap_bytes * 12 / (12 + 32 * block)`. The 64-bit binary's blocks are 32 bytes, a 32-bit
    watch's 16: the simulation's larger heap holds larger tables than the watch's budget
    does (2.5 KB against 0.75 KB for the PineTime); `gc.mem_free()` does not count them."""
    return heap_bytes * 12 // (12 + 32 * block_bytes)


def table_credit(heapsize: int, budget: int) -> int:
    """What the simulation's GC tables at `heapsize` take beyond the watch's at `budget`."""
    return table_bytes(heapsize, 32) - table_bytes(budget, 16)
_SCRIPT = """
import gc
if LATE:  # compiled first, as sim_boot does: the names they intern come before the shims'
    import sim_frozen
    sim_frozen.install(LATE)
gc.collect()
a = gc.mem_alloc()
import time, machine, sim_scenario
radio = __import__(RADIO)
bus = machine.I2C(0)
if RADIO == "ubluepy":
    import bluetooth
bluetooth = __import__("bluetooth")
ble = bluetooth.BLE()
gc.collect()
shims = gc.mem_alloc() - a
if RADIO_MODULE:
    # The attribute table the firmware's radio registers: on a watch the stack (NimBLE, the
    # SoftDevice) holds it in its own RAM; here the shim's Python objects hold it.
    radio = __import__(RADIO_MODULE, None, None, ["Radio"]).Radio("WEARS", "board", "0")
    gc.collect()
    b = gc.mem_alloc()
    radio.start()
    gc.collect()
    shims += gc.mem_alloc() - b
if SERIAL:
    # The serial link's UART: on a watch the port's C driver and its buffers, here sim_uart.
    gc.collect()
    b = gc.mem_alloc()
    uart = machine.UART(SERIAL[0], SERIAL[1], rxbuf=SERIAL[2])
    gc.collect()
    shims += gc.mem_alloc() - b
print("SHIMS", shims)
"""
# Every firmware module loads at boot but these: the radio modules of the links a board does
# not use, the drivers of parts it does not have, and what the firmware imports on demand.
_RADIOS = {"serial": ("watch/radio_serial",), "ubluepy": ("watch/radio_ubluepy", "watch/segments"),
           "bluetooth": ("watch/radio",)}
# Imported on demand: an MLP model's runtime and the plain / version-1 tree twins (by watch.model
# when it needs them), the upload (at the first MODEL_BEGIN) and the baseline (for a model on
# baseline-subtracted features).
_ON_DEMAND = ("watch/mlp", "watch/mlp_plain", "watch/trees_v1", "watch/trees_plain", "watch/upload", "watch/baseline")
_MODEL_MODULES = ("watch/model",)  # the runtime: imported at boot only when a model is in the flash
# What only a model's load runs (watch.app's _LOAD_MODULES): imported for a load (at boot, a
# commit, a rollback) and dropped after it, so never a boot module. A frozen board compiles them
# at boot (late_modules) as its image holds them in flash; no state after a load counts them.
_LOAD_MODULES = ("watch/loader", "watch/blob", "watch/trees_v1")
_PART_MODULES = {"MAX30102": ("watch/drivers/max30102",), "LSM6DS3TR-C": ("watch/drivers/lsm6ds3",),
                 "HRS3300": ("watch/drivers/hrs3300",), "BMA421": ("watch/drivers/bma421", "watch/drivers/bosch_fifo"),
                 "BMI160": ("watch/drivers/bmi160", "watch/drivers/bosch_fifo")}


def late_modules(profile: dict, model: bool = False, sources: Path = FIRMWARE) -> dict[str, str]:
    """The modules a `"frozen": true` board imports after boot (`model`: with a model in its
    flash), by dotted name, with their sources: the sim_frozen shim compiles them at boot and
    hands the firmware their RAM state only when it imports them. Empty for other boards."""
    if not profile.get("frozen"):
        return {}
    boot = set(firmware_modules(profile, model))
    later = [m for m in {*_ON_DEMAND, *_LOAD_MODULES, *_MODEL_MODULES}
             if m not in boot and (sources / f"{m}.py").exists()]
    return {m.replace("/", "."): str(sources / f"{m}.py") for m in sorted(later)}


def firmware_modules(profile: dict, model: bool = False) -> list[str]:
    """The firmware modules (paths below firmware/ without .py) a board imports at boot
    (`model`: with a model in its flash)."""
    link = "serial" if profile.get("link") == "serial" else profile.get("radio", "bluetooth")
    others = {m for name, mods in _RADIOS.items() if name != link for m in mods} - set(_RADIOS.get(link, ()))
    parts = {m for s in profile.get("sensors", {}).values() for m in _PART_MODULES.get(s.get("part"), ())}
    drivers = {m for mods in _PART_MODULES.values() for m in mods} - parts
    every = {str(f.relative_to(FIRMWARE).with_suffix("")) for f in FIRMWARE.rglob("*.py")}
    later = set(_ON_DEMAND) | set(_LOAD_MODULES) | (set() if model else set(_MODEL_MODULES))
    return sorted(every - others - drivers - later)


_FROZEN_SCRIPT = """
import gc, micropython, struct, array, os, hashlib, binascii, math, json, errno


def alloc():  # in a function: no stale reference to the script's compilation on the stack
    gc.collect()
    return gc.mem_alloc()


a = alloc()
# The modules imported after boot, compiled first and held by the sim_frozen shim, as the
# virtual watch's boot does (sim_boot); the shim's own few hundred bytes count with them.
if LATE:
    import sim_frozen
    sim_frozen.install(LATE)
held = alloc() - a
import time, machine, sim_scenario
import bluetooth
if RADIO == "ubluepy":
    import ubluepy
# The shims' boot as sim_boot runs it: the names it interns decide where the pool of interned
# names grows (by doubling: 14 KB at once on the 64-bit binary), so the firmware's modules
# load here into the same pools as on the virtual watch.
bus = machine.I2C(0)
ble = bluetooth.BLE()
gc.collect()
a = gc.mem_alloc()
for m in MODULES:
    __import__(m)
gc.collect()
loaded = gc.mem_alloc() - a
kept = 0
for m in MODULES:
    with open(SOURCES[m]) as f:
        code = compile(f.read(), m, "exec")
    gc.collect()
    b = gc.mem_alloc()
    g = {"__name__": m}
    exec(code, g)
    gc.collect()
    kept += gc.mem_alloc() - b
    g = code = None
print("FROZEN", held + loaded - kept)
"""


def frozen_bytes(profile: dict, micropython: str, micropython_path: str, sources: Path = FIRMWARE,
                 model: bool = False) -> int:
    """What freezing moves out of the heap (`model`: with a model in its flash): for the modules
    the board imports at boot, measured with the `.mpy` files on `micropython_path` and the
    `sources` they were compiled from; for those it imports later (`late_modules`), what their
    compiled code holds. Cached; 0 when the profile is not frozen."""
    if not profile.get("frozen"):
        return 0
    names = _module_sources(profile, sources, model)
    late = late_modules(profile, model, sources)
    order = sorted(names, key=lambda m: (m.count("."), m != "watch", m == "watch.app", m))
    digest = [(m, Path(p).read_text()) for m, p in [*((m, names[m]) for m in order), *late.items()]]
    radio = "ubluepy" if profile.get("radio") == "ubluepy" else "bluetooth"
    spec = ",".join(f"{m}={p}" for m, p in late.items())
    script = f"RADIO = {radio!r}\nMODULES = {order!r}\nSOURCES = {names!r}\nLATE = {spec!r}\n" + _FROZEN_SCRIPT
    return _measure("FROZEN", script, [_FROZEN_SCRIPT, radio, profile.get("sensors"), digest, micropython_path],
                    profile, micropython, micropython_path)[0]


# The firmware's heap at boot split into what scales with the pointer width and what does
# not. MicroPython's objects are made of machine words (mp_obj_t, pointers, size_t) and its
# heap hands out blocks of 4 words: an allocation of w words takes 32 * ceil(w / 4) bytes on
# the 64-bit unix binary and exactly half that on a 32-bit watch. Only byte content keeps its
# size: array, bytearray and str/bytes data (counted at its 64-bit rounding: conservative). A
# memoryview is an object of 4 words like any other: its bytes are its buffer's, which the
# firmware keeps a reference to wherever it keeps views of it. So the watch needs
#     (kept - data) / 2 + data32
# where `kept` is what stays in RAM of the modules (their bodies executed from compiled code,
# as a frozen image runs them) plus the watch's objects after Watch() (the radio's attribute
# table counts with the shims). Objects made later (a connection's) are not halved: conservative.
_WIDTH_SCRIPT = """
import gc, sys
import time, machine, sim_scenario, micropython, struct, array, os, hashlib, binascii, math, json, errno
import bluetooth
if RADIO == "ubluepy":
    import ubluepy
bus = machine.I2C(0)
ble = bluetooth.BLE()
kept = 0
for m in MODULES:
    __import__(m)
for m in MODULES:
    with open(SOURCES[m]) as f:
        code = compile(f.read(), m, "exec")
    gc.collect()
    b = gc.mem_alloc()
    g = {"__name__": m}
    exec(code, g)
    gc.collect()
    kept += gc.mem_alloc() - b
    g = code = None
import watch.app
gc.collect()
b = gc.mem_alloc()
w = watch.app.Watch(1)
gc.collect()
kept += gc.mem_alloc() - b
seen = {}
data = [0, 0]


def walk(todo, kinds):
    while todo:
        o = todo.pop()
        if id(o) in seen:
            continue
        seen[id(o)] = 1
        if isinstance(o, kinds):
            n = len(o) if isinstance(o, str) else len(bytes(o))
            if n:
                data[0] += (n + 31) // 32 * 32
                data[1] += (n + 15) // 16 * 16
        elif isinstance(o, dict):
            for k, v in o.items():
                if not isinstance(k, str):  # names are interned: in the image's flash, not the heap
                    todo.append(k)
                todo.append(v)
        elif isinstance(o, (list, tuple)):
            todo.extend(o)
        elif hasattr(o, "__dict__") and type(o).__name__ not in ("module", "function"):
            todo.append(o.__dict__)  # an instance's attributes, a class's


# The watch's objects: every buffer and string. The modules': buffers their bodies built
# (their str and bytes constants are in the image's flash, credited with the bytecode).
walk([w], (bytearray, bytes, str, array.array))
walk([sys.modules[m].__dict__ for m in MODULES], (bytearray, array.array))
data64, data32 = data
print("WIDTH", kept - ((kept - data64) // 2 + data32), kept, data64)
"""
# Appended to _WIDTH_SCRIPT (whose text stays as it is: its names decide where the pools of
# interned names grow, and so the no-model figure) for the states after boot. The firmware's
# flash holds the watch key and, for STATE "model", the board's model (model.wbl), so Watch(1)
# loads it and builds the feature engine and the heart-rate estimator around it, as a commit
# does. For STATE "upload" the watch then makes its ModelUpload, as at an upload's first
# MODEL_BEGIN (its modules are among MODULES). A measurement that imported a firmware module
# not among MODULES (its code would count as state), that kept one it holds for the firmware to
# drop (DROPPED, _WIDTH_HELD_SCRIPT), or whose model did not load is an error.
_WIDTH_LATER_SCRIPT = """
if STATE == "upload":
    gc.collect()
    b = gc.mem_alloc()
    w._uploader()
    gc.collect()
    kept += gc.mem_alloc() - b
    walk([w.upload], (bytearray, bytes, str, array.array))
    data64, data32 = data
elif w.model is None:
    raise RuntimeError("the model did not load: no state with a model to measure")
unmeasured = [m for m in sys.modules if m.split(".")[0] == "watch" and m not in SOURCES]
if unmeasured:
    raise RuntimeError("imported while measured, its code counted as state: " + repr(unmeasured))
print("LATER", kept - ((kept - data64) // 2 + data32), kept, data64)
"""
# Put before the script for STATE "model": the modules a load imports and the firmware drops
# after it (DROPPED, from _LOAD_MODULES) are imported first and held here, so that their code
# stays loaded (as a frozen image keeps it in flash) and their drop frees only their RAM state,
# which the state measured does not hold; they are not among MODULES (not counted).
_WIDTH_HELD_SCRIPT = """
import sys
HELD = []
for m in DROPPED:
    __import__(m)
    HELD.append(sys.modules[m])
"""
# A fixed key for the measurement's flash: the model is re-signed with it (its bytes decide nothing).
_WIDTH_KEY = bytes(range(32))


@dataclass(frozen=True)
class Width:
    """The pointer-width measurement of one state of a board's firmware (`width_parts`).

    Attributes:
        credit: what the 64-bit binary needs beyond a 32-bit watch for it, in bytes.
        kept: the heap the state takes on the 64-bit binary (modules' RAM state, the watch's objects).
        data: the buffer bytes among `kept` (at their 64-bit rounding), which do not shrink.
    """

    credit: int
    kept: int
    data: int


def width_parts(profile: dict, micropython: str, micropython_path: str, sources: Path = FIRMWARE,
                state: str = "boot", model: bytes | None = None) -> Width:
    """The pointer-width measurement of the board's firmware in `state` (see `width_bytes`)."""
    return Width(*_width(profile, micropython, micropython_path, sources, state, model)[:3])


def _width(profile: dict, micropython: str, micropython_path: str, sources: Path, state: str,
           model: bytes | None) -> list[int]:
    if state not in ("boot", "model", "upload"):
        raise WearsError(f"no firmware state {state!r} to measure (boot, model, upload)")
    if state == "model" and model is None:
        raise WearsError("the state with a model needs the model's blob")
    needs = _model_needs(profile, model) if model is not None else ()
    # an upload holds its module and watch.blob until its commit imports the loader and the runtime
    extra = ("watch/upload", "watch/blob") if state == "upload" else tuple(m for m in needs if m not in _LOAD_MODULES)
    names = _module_sources(profile, sources, state == "model", extra)
    order = sorted(names, key=lambda m: (m.count("."), m != "watch", m == "watch.app", m))
    radio = "ubluepy" if profile.get("radio") == "ubluepy" else "bluetooth"
    script = f"RADIO = {radio!r}\nMODULES = {order!r}\nSOURCES = {names!r}\n" + _WIDTH_SCRIPT
    digest = [(m, Path(names[m]).read_text()) for m in order]
    key_parts: list = [_WIDTH_SCRIPT, profile, digest, micropython_path]
    if state == "boot":  # the boot's script and key as before states after it were measured
        return _measure("WIDTH", script, key_parts, profile, micropython, micropython_path)
    files = {"key.bin": _WIDTH_KEY}
    if state == "model":
        from ..blob import resign

        files["model.wbl"] = resign(model, _WIDTH_KEY)  # type: ignore[arg-type]
        dropped = _dropped_after_load(sources, needs)
        script = f"DROPPED = {dropped!r}\n" + _WIDTH_HELD_SCRIPT + script
        key_parts += [_WIDTH_HELD_SCRIPT, [(m, (sources / f"{m.replace('.', '/')}.py").read_text()) for m in dropped]]
    script = f"STATE = {state!r}\n" + script + _WIDTH_LATER_SCRIPT
    blob_digest = hashlib.sha256(model).hexdigest() if model is not None else None
    return _measure("LATER", script, [*key_parts, _WIDTH_LATER_SCRIPT, state, blob_digest], profile, micropython,
                    micropython_path, files=files)


def _dropped_after_load(sources: Path, needs: tuple[str, ...]) -> list[str]:
    """The modules (dotted) a load of a model that `needs` these on-demand modules imports and
    the firmware drops after it: the loader's, and the version-1 reader when it needs it."""
    return [m.replace("/", ".") for m in _LOAD_MODULES
            if (m in needs or m not in _ON_DEMAND) and (sources / f"{m}.py").exists()]


def width_bytes(profile: dict, micropython: str, micropython_path: str, sources: Path = FIRMWARE,
                model: bool | bytes = False, upload: bool = False) -> int:
    """What the 64-bit binary needs beyond a 32-bit watch for the board's firmware: half of
    what stays in RAM minus its byte content (see `_WIDTH_SCRIPT`), measured (cached).

    Args:
        model: measure the state with a model: booted with it in the flash, its modules
            (`firmware_modules(profile, model=True)`; not the loader's, which the firmware
            drops after the load: `_LOAD_MODULES`), the model and the feature engine and
            heart-rate estimator built around it, as a commit leaves them. True: the board's
            shipped model (`shipped_model`; a board without one, or a profile that cannot feed
            it, measures the boot without a model, whose credit leaves the model's objects
            uncounted: conservative); bytes:
            that blob (re-signed for the measurement). False: the boot without a model.
        upload: measure an upload under way: the boot without a model plus the upload's
            modules and its ModelUpload (`model` ignored).

    Objects made after the state measured count at their 64-bit size: conservative.
    """
    if upload:
        return _width(profile, micropython, micropython_path, sources, "upload", None)[0]
    blob = shipped_model(profile) if model is True else (model or None)
    if blob is None:
        return _width(profile, micropython, micropython_path, sources, "boot", None)[0]
    return _width(profile, micropython, micropython_path, sources, "model", bytes(blob))[0]


def _model_needs(profile: dict, model: bytes) -> tuple[str, ...]:
    """The on-demand modules (`_ON_DEMAND`) the firmware imports to load and run `model` on
    this board (watch.model and watch.app decide the same way; the measuring script refuses a
    module it did not expect): an MLP's runtime, the version-1 trees' reader, the baseline
    for a model on baseline-subtracted features. The binary has viper: no plain twins."""
    from watch.features import spec_for

    from ..blob import KIND_MLP_INT8, read_blob

    info = read_blob(model, None)
    imu = profile.get("sensors", {}).get("imu") or {}
    needs = ["watch/mlp"] if info.kind == KIND_MLP_INT8 else ["watch/trees_v1"] if info.version < 2 else []
    if info.feature_spec != spec_for("gyro_range_dps" in imu)[0]:
        needs.append("watch/baseline")
    return tuple(needs)


def shipped_model(profile: dict) -> bytes | None:
    """The board's shipped model (models/<id>.wbl), None when it has none or when this profile
    cannot feed it (a profile changed from its board's: another IMU, no gyroscope)."""
    from watch.features import spec_for

    from ..blob import read_blob
    from ..flash import MODELS

    path = MODELS / f"{profile.get('id')}.wbl"
    if not profile.get("id") or not path.exists():
        return None
    data = path.read_bytes()
    gyro = "gyro_range_dps" in (profile.get("sensors", {}).get("imu") or {})
    info = read_blob(data, None)
    feeds = info.feature_spec in (spec_for(gyro)[0], spec_for(gyro, True)[0]) and info.n_features == spec_for(gyro)[1]
    return data if feeds else None


def _module_sources(profile: dict, sources: Path, model: bool = False, extra: tuple = ()) -> dict[str, str]:
    names = {}
    for module in [*firmware_modules(profile, model), *extra]:
        path = sources / f"{module}.py"
        if module != "main" and path.exists():  # main runs the watch when imported; a few bytes
            names[module.replace("/__init__", "").replace("/", ".")] = str(path)
    return names


def shim_bytes(profile: dict, micropython: str, micropython_path: str, model: bool = False) -> int:
    """The shims' heap for this board (`model`: with a model in its flash, which decides the
    modules compiled before them, `late_modules`), measured in the MicroPython binary (cached
    per board and tree)."""
    radio = "ubluepy" if profile.get("radio") == "ubluepy" else "bluetooth"
    serial = profile.get("link") == "serial"
    module = "" if serial else f"watch.radio{'_ubluepy' if radio == 'ubluepy' else ''}"
    uart = None
    if serial:
        cfg = profile.get("serial") or {}
        uart = (cfg.get("id", 1), cfg.get("baudrate", 115200), cfg.get("rxbuf", 256))
    late = ",".join(f"{m}={p}" for m, p in late_modules(profile, model).items())
    script = f"RADIO = {radio!r}\nRADIO_MODULE = {module!r}\nSERIAL = {uart!r}\nLATE = {late!r}\n" + _SCRIPT
    return _measure("SHIMS", script, [_SCRIPT, profile.get("radio"), profile.get("link"), uart, profile.get("sensors"),
                                      late, micropython_path], profile, micropython, micropython_path, serial=serial)[0]


def _measure(tag: str, script: str, key_parts: list, profile: dict, micropython: str, micropython_path: str,
             serial: bool = False, files: dict[str, bytes] | None = None) -> list[int]:
    # Runs `script` in the binary at a large heap with the board's profile (and `files`) in its
    # flash; the integers on its line starting with `tag`, cached under a digest of the key
    # (scripts and sources: whole texts made the keys, and the file every call reads, hundreds
    # of MB; the old file, shim-heap.json, is the older trees' and stays theirs).
    key = tag + " " + hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()
    cache = Path(tempfile.gettempdir()) / f"wears-mpy-{os.getuid()}" / "measured-heap.json"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known.get(key), list):
        return [int(v) for v in known[key]]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "board.json").write_text(json.dumps(profile))
        for name, content in (files or {}).items():
            (Path(tmp) / name).write_bytes(content)
        path = Path(tmp) / "measure.py"
        path.write_text(script)
        env = {**os.environ, "MICROPYPATH": micropython_path, "WEARS_SIM_SCENARIO": "", "WEARS_SIM_REGISTRY": tmp}
        fds: tuple[int, ...] = ()
        if serial:  # a pseudo-terminal for the UART shim to open, as the virtual watch gives it
            fds = os.openpty()
            env["WEARS_SIM_SERIAL_FD"] = str(fds[0])
        try:
            proc = subprocess.run([micropython, "-X", "heapsize=4000000", str(path)], cwd=tmp, env=env,
                                  capture_output=True, text=True, timeout=120, pass_fds=fds[:1])
        finally:
            for fd in fds:
                os.close(fd)
    for line in proc.stdout.splitlines():
        if line.startswith(tag + " "):
            values = [int(v) for v in line.split()[1:]]
            break
    else:
        why = (proc.stderr.strip() or proc.stdout.strip())[-2000:]  # a traceback goes to stdout
        raise WearsError(f"could not measure the simulation's heap ({tag.lower()}): {why}")
    known[key] = values
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp_cache = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp_cache.write_text(json.dumps(known))
    tmp_cache.replace(cache)
    return values
