"""The watch's USB CDC path (`StdioPort`: sys.stdin / sys.stdout) inside the MicroPython binary."""

import subprocess
from pathlib import Path

from watch import radio_serial as L
from wears.paths import FIRMWARE, board_profile
from wears.serial_link import FrameDecoder, encode_frame
from wears.sim.runner import micropython_binary

ECHO = Path(__file__).resolve().parent.parent / "firmware" / "serial_echo.py"


def test_stdio_port_carries_frames_both_ways_including_bytes_a_terminal_would_eat():
    payloads = [b"\x03\x03ctrl-c", b"\r\n\x04\x1a", bytes(range(256))[:200], b"\x00" * 50]
    host = b"\x00" + encode_frame(L.OP_CONNECT, 0, b"\x01")
    host += b"".join(encode_frame(L.OP_WRITE, L.CH_CONTROL, b"\x01" + p) for p in payloads)
    host += encode_frame(L.OP_WRITE, L.CH_CONTROL, b"\x00bye")
    proc = subprocess.run([micropython_binary(), "-X", f"heapsize={board_profile()['heap_budget_bytes']}", str(ECHO)],
                          input=host, capture_output=True, timeout=60, env={"MICROPYPATH": str(FIRMWARE)})
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    decoder = FrameDecoder()
    frames = decoder.feed(proc.stdout)
    assert decoder.bad == 0
    assert frames[0] == (L.OP_CONNECTED, 0, b"\x01\xf4\x00ECHO")
    echoed = [value for op, channel, value in frames if op == L.OP_NOTIFY]
    assert echoed == payloads
    assert frames.count((L.OP_WRITE_RSP, L.CH_CONTROL, b"\x00")) == len(payloads)
    assert frames[-1] == (L.OP_GOODBYE, 0, bytes((L.HCI_POWER_OFF,)))
