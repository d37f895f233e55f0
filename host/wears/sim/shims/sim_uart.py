"""The virtual watch's UART (`machine.UART`): its wires end in the host's pseudo-terminal.

The runner opens a pseudo-terminal, hands its master side to the process as the file
descriptor `WEARS_SIM_SERIAL_FD` and gives the host the other side's path, as a USB cable
gives it /dev/ttyACM0. Received bytes move into the UART's receive buffer while the firmware
sleeps (a clock poller, as the UART's interrupt would); `write` blocks in real time while the
host does not read, so a slow host never costs the watch a byte. Until the first byte from
the host arrives the clock stands still (unless `WEARS_SIM_AUTOSTART=1`), as the `bluetooth`
shim waits for its first central. The watch is listed in the registry with `"link": "serial"`
so that the runner knows it booted.
"""

import json
import os
import select
import sys
import time


def _pid():
    """This process's id, from /proc (MicroPython's os has no getpid)."""
    try:
        with open("/proc/self/stat") as f:
            return int(f.read(24).split()[0])
    except (OSError, ValueError):
        return 0


class UART:
    """The MicroPython `machine.UART` subset the firmware uses: any, read, readinto, write."""

    def __init__(self, id, baudrate=115200, *, rxbuf=256, timeout=0, **pins):
        fd = os.getenv("WEARS_SIM_SERIAL_FD")
        if not fd:
            raise OSError(19)  # ENODEV: this virtual watch has no serial link
        self.baudrate = baudrate
        self._f = open(int(fd), "r+b")
        self._poll = select.poll()
        self._poll.register(self._f, select.POLLIN)
        self._one = bytearray(1)
        self._rx = bytearray(rxbuf)
        self._head = 0
        self._count = 0
        self._started = os.getenv("WEARS_SIM_AUTOSTART") == "1"
        self._entry = None
        self._announce()
        time.add_poller(self._poller)

    # Registry ---------------------------------------------------------------------------

    def _announce(self):
        folder = os.getenv("WEARS_SIM_REGISTRY")
        address = os.getenv("WEARS_SIM_ADDRESS")
        if not folder or not address:
            return
        try:
            os.mkdir(folder)
        except OSError:
            pass  # it exists
        self._entry = "%s/%s.json" % (folder, address.replace(":", "-"))
        info = {"name": os.getenv("WEARS_SIM_NAME") or "", "address": address, "pid": _pid(),
                "link": "serial", "advertising": False, "connectable": False}
        with open(self._entry + ".tmp", "w") as f:
            json.dump(info, f)
        os.rename(self._entry + ".tmp", self._entry)
        hook = getattr(sys.modules.get("machine"), "on_power_off", None)
        if hook:
            hook(self._withdraw)
        self._prev_atexit = sys.atexit(self._atexit)

    def _withdraw(self):
        if self._entry:
            try:
                os.remove(self._entry)
            except OSError:
                pass
            self._entry = None

    def _atexit(self):
        self._withdraw()
        if self._prev_atexit:
            self._prev_atexit()

    # The wire -------------------------------------------------------------------------

    def _poller(self, timeout_ms):
        if not self._started:
            self._poll.poll(-1)  # the watch's time stands still until a host writes
            self._started = True
            time.hold()
            timeout_ms = 0
        rx = self._rx
        size = len(rx)
        ready = self._poll.poll(timeout_ms)
        while ready and self._count < size:
            if self._f.readinto(self._one) != 1:
                break
            rx[(self._head + self._count) % size] = self._one[0]
            self._count += 1
            ready = self._poll.poll(0)

    def any(self):
        if not self._count:
            self._poller(0)
        return self._count

    def readinto(self, buf, nbytes=-1):
        n = len(buf) if nbytes < 0 else min(nbytes, len(buf))
        if not self._count:
            self._poller(0)
        n = min(n, self._count)
        rx = self._rx
        size = len(rx)
        for i in range(n):
            buf[i] = rx[self._head]
            self._head = (self._head + 1) % size
        self._count -= n
        return n or None

    def read(self, nbytes=-1):
        buf = bytearray(self._count if nbytes < 0 else nbytes)
        n = self.readinto(buf)
        return bytes(buf[:n]) if n else None

    def write(self, buf):
        return self._f.write(buf)  # unbuffered: straight to the pseudo-terminal
