"""A board on a pseudo-terminal that speaks MicroPython's raw REPL and runs what it is sent in
the real MicroPython binary, with a folder as its flash filesystem: what `wears flash` and
mpremote talk to in the tests, as they would to a watch on USB.

Raw REPL as MicroPython implements it (docs: "raw REPL"): Ctrl-A enters it ("raw REPL; CTRL-B
to exit\\r\\n>"), code ends with Ctrl-D and is answered "OK", its output, Ctrl-D, the
exception text, Ctrl-D, ">"; Ctrl-D on an empty buffer soft-resets; Ctrl-B leaves; raw-paste
requests (Ctrl-E A Ctrl-A) are declined ("R\\x00"), as older firmware does. `machine.reset()`
restarts the interpreter. A board without MicroPython (`answer=False`) prints a bootloader's
line and never answers, as a board with another firmware (or none) does.

Example:
    >>> with SerialBoard(flash_dir) as board:                      # doctest: +SKIP
    ...     print(board.port)                                      # /dev/pts/N
"""

from __future__ import annotations

import os
import select
import subprocess
import threading
import tty
from pathlib import Path

from .runner import micropython_binary

BANNER = b"MicroPython v1.29.0 on 2026-08-29; WEARS virtual board with unix\r\nType \"help()\" for more information.\r\n>>> "
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"

# Runs inside MicroPython: reads length-prefixed code from stdin, executes it in one namespace,
# writes output, Ctrl-D, the exception, Ctrl-D, as the raw REPL frames them.
_DRIVER = r'''
import sys
import wears_board_machine
sys.modules["machine"] = wears_board_machine  # the unix port's own machine has no reset()
g = {"__name__": "__main__"}
inp = sys.stdin.buffer
out = sys.stdout
while True:
    line = inp.readline()
    if not line:
        break
    n = int(line)
    code = b""
    while len(code) < n:
        part = inp.read(n - len(code))
        if not part:
            break
        code += part
    try:
        exec(code, g)
        out.write("\x04\x04")
    except SystemExit:
        raise  # the board resets: the server sees the interpreter end
    except BaseException as e:
        out.write("\x04")
        sys.print_exception(e, out)
        out.write("\x04")
'''

# `machine.reset()` on the virtual board: the interpreter exits and the board restarts it.
_MACHINE = "import sys\n\ndef reset():\n    sys.exit(0)\n\n\ndef soft_reset():\n    sys.exit(0)\n\n\ndef unique_id():\n    return b'WEARSVB1'\n"


class SerialBoard:
    """A virtual board on a pty. `port` is the device path to open with pyserial / mpremote.

    Args:
        flash_dir: the folder that plays the board's filesystem (the interpreter's cwd).
        heap_bytes: MicroPython's heap (`-X heapsize`).
        answer: False for a board that does not run MicroPython.
    """

    def __init__(self, flash_dir: str | os.PathLike[str], *, heap_bytes: int = 256 * 1024, answer: bool = True) -> None:
        self.flash_dir = Path(flash_dir)
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self.heap_bytes = heap_bytes
        self.answer = answer
        self.resets = 0
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="serial-board", daemon=True)
        self._support = Path(self.flash_dir.parent / f".{self.flash_dir.name}-board")
        self._support.mkdir(exist_ok=True)
        (self._support / "wears_board_driver.py").write_text(_DRIVER)
        (self._support / "wears_board_machine.py").write_text(_MACHINE)

    def __enter__(self) -> "SerialBoard":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._kill()
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    # The interpreter ------------------------------------------------------------------

    def _start(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            env = {**os.environ, "MICROPYPATH": ":".join([str(self.flash_dir.resolve()), str(self._support)])}
            self._proc = subprocess.Popen([micropython_binary(), "-X", f"heapsize={self.heap_bytes}",
                                           str(self._support / "wears_board_driver.py")], cwd=self.flash_dir,
                                          env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL)
        return self._proc

    def _kill(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def _run(self, code: bytes) -> bytes:
        proc = self._start()
        assert proc.stdin and proc.stdout
        proc.stdin.write(b"%d\n" % len(code) + code)
        proc.stdin.flush()
        reply = bytearray()
        marks = 0
        while marks < 2:
            byte = proc.stdout.read(1)
            if not byte:  # the interpreter exited: machine.reset()
                self.resets += 1
                self._kill()
                return bytes(reply) + b"\x04" * (2 - marks)
            reply += byte
            marks += byte == b"\x04"
        return bytes(reply)

    # The serial line -------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        os.write(self._master, data)

    def _serve(self) -> None:
        raw = False
        buf = bytearray()
        if not self.answer:
            self._write(b"ESP-ROM:esp32s3-20210327\r\nwaiting for download\r\n")
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(self._master, 4096)
            except OSError:
                return
            if not self.answer:
                continue
            for b in data:
                byte = bytes([b])
                if not raw:
                    if byte == b"\x01":
                        raw, buf = True, bytearray()
                        self._write(b"\r\n" + RAW_BANNER)
                    elif byte == b"\x04":
                        self._kill()
                        self._write(b"MPY: soft reboot\r\n" + BANNER)
                    elif byte == b"\r":
                        self._write(b"\r\n>>> ")
                    continue
                if byte == b"\x01":
                    buf = bytearray()
                    self._write(b"\r\n" + RAW_BANNER)
                elif byte == b"\x02":
                    raw = False
                    self._write(b"\r\n" + BANNER)
                elif byte == b"\x03":
                    buf = bytearray()
                elif byte == b"\x04":
                    if not buf:
                        self._kill()
                        self.resets += 1
                        self._write(b"OK\r\nMPY: soft reboot\r\n" + RAW_BANNER)
                    else:
                        code, buf = bytes(buf), bytearray()
                        self._write(b"OK" + self._run(code) + b">")
                elif buf == b"\x05A" and byte == b"\x01":
                    buf = bytearray()
                    self._write(b"R\x00")
                else:
                    buf += byte


def serial_board_available() -> bool:
    """Whether pseudo-terminals work here (POSIX)."""
    try:
        master, slave = os.openpty()
    except (OSError, AttributeError):
        return False
    os.close(master)
    os.close(slave)
    return True

