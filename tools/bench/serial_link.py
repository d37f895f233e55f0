"""The USB serial link against BLE, on the virtual watch, and what its frame codec costs.

Records the same synthetic scenario twice at full speed, once over the virtual BLE bridge and
once over the serial link on a pseudo-terminal (the unmodified firmware in MicroPython, the
same WatchClient / record above either), and reports each link's virtual seconds per real
second, the serial/BLE ratio and the samples lost. Then times the frame codec: on the host,
FrameDecoder megabytes per second; on the watch (MicroPython), microseconds to frame one
244-byte packet (COBS + CRC-16), against a plain byte copy of the same packet in the same
process. Prints one JSON object as its last line.

    .venv/bin/python tools/bench/serial_link.py [--seconds 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
from pathlib import Path

from watch import radio_serial as L
from wears.ble.virtual import VirtualBleakClient
from wears.db import Study
from wears.paths import FIRMWARE
from wears.record import record
from wears.serial_link import FrameDecoder, SerialBleakClient, encode_frame
from wears.sim.runner import VirtualWatch, micropython_binary
from wears.sim.scenario import synthetic

_WATCH_CODEC = """
import time
from watch import radio_serial as L
packet = bytearray(range(1, 245))
raw = bytearray(L.MAX_RAW)
out = bytearray(L.MAX_ENCODED)
N = 300
t = time.ticks_us()
for _ in range(N):
    for i in range(244):
        raw[i] = packet[i]
copy_us = time.ticks_diff(time.ticks_us(), t) / N
t = time.ticks_us()
for _ in range(N):
    L.pack_frame(raw, 3, 1, packet, 244, out)
frame_us = time.ticks_diff(time.ticks_us(), t) / N
print(copy_us, frame_us)
"""


async def _record(path: Path, work: Path, link: str, until_s: float) -> dict:
    study = Study.open(work / f"{link}.db")
    async with VirtualWatch(path, flash_dir=work / link, link=link) as vw:
        address, backend = (vw.serial_port, SerialBleakClient) if link == "serial" else (vw.address, VirtualBleakClient)
        started = time.perf_counter()
        _, stats = await record(study, address, participant="P01", until_s=until_s, backend=backend)
        elapsed = time.perf_counter() - started
    return {"virtual_s": round(stats.seconds(), 1), "real_s": round(elapsed, 2),
            "speed_ratio": round(stats.seconds() / elapsed, 1), "samples": sum(stats.samples.values()),
            "lost_samples": stats.lost_samples, "bad_packets": stats.bad_packets}


def _host_decode_mb_s() -> float:
    frame = encode_frame(L.OP_NOTIFY, L.CH_STREAM, bytes(range(1, 245)))
    stream = frame * 2000
    decoder = FrameDecoder()
    started = time.perf_counter()
    frames = decoder.feed(stream)
    elapsed = time.perf_counter() - started
    assert len(frames) == 2000 and decoder.bad == 0
    return len(stream) / elapsed / 1e6


def _watch_codec() -> tuple[float, float]:
    out = subprocess.run([micropython_binary(), "-c", _WATCH_CODEC], capture_output=True, text=True, timeout=120,
                         env={"MICROPYPATH": str(FIRMWARE)}, check=True).stdout.split()
    return float(out[0]), float(out[1])


async def run(seconds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        episodes = max(1, (seconds - 60) // 90)
        scenario = synthetic(1, rest_s=seconds - 90 * episodes, episode_s=90, n_episodes=episodes)
        scenario.write(work / "s.wscn")
        until = scenario.duration_s - 5
        ble = await _record(work / "s.wscn", work, "ble", until)
        serial = await _record(work / "s.wscn", work, "serial", until)
    copy_us, frame_us = _watch_codec()
    return {
        "benchmark": "serial_link",
        "ble": ble,
        "serial": serial,
        "serial_over_ble_speed": round(serial["speed_ratio"] / ble["speed_ratio"], 2),
        "lost_samples": ble["lost_samples"] + serial["lost_samples"],
        "host_decode_mb_per_s": round(_host_decode_mb_s(), 2),
        "watch_frame_244_us_unix": round(frame_us, 1),
        "watch_frame_over_copy": round(frame_us / copy_us, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=300)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.seconds))))


if __name__ == "__main__":
    main()
