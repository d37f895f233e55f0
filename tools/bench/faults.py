"""The collection fault scenario and the decoder fuzz run.

A virtual watch records `--seconds` of PPG (plus IMU) at real speed while its link is cut every
30 s, notifications are dropped, duplicated and reordered, the watch reboots, and the host
process is killed and restarted with `wears record --resume`; the study database is then
checked against the watch's own flash log and its true clock. Then the packet decoder gets
`--fuzz` generated and mutated packets (hypothesis) through the client's receive path.
Prints one JSON object as its last line:
`samples_expected`, `samples_stored`, `duplicates`, `max_time_error_ms`, `fuzz_cases`, `fuzz_crashes`.

    .venv/bin/python tools/bench/faults.py [--seconds 150] [--fuzz 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings

from watch import segments
from wears.ble.virtual import VirtualBleakClient
from wears.client import WatchClient
from wears.errors import ProtocolError
from wears.fuzz import packets
from wears.protocol import decode
from wears.sim.fault_scenario import run_fault_scenario


def fuzz(cases: int) -> dict:
    """Feed `cases` packets to the decoder and the client's receive path; count what escapes."""
    client = WatchClient("AA:BB:CC:DD:EE:FF", backend=VirtualBleakClient, on_record=lambda r: None,
                         on_bad_packet=lambda *a: None)
    client._ready = True
    handle = client._handler("stream")
    seen = {"cases": 0, "rejected": 0, "crashes": 0, "uncounted": 0}
    examples: list[str] = []

    @settings(max_examples=cases, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(packets())
    def feed(data: bytes) -> None:
        seen["cases"] += 1
        before = client.bad_packets
        try:
            decode(data)
            bad = False
        except ProtocolError:
            bad = True
        except Exception as e:  # a crash: anything but a clean rejection
            seen["crashes"] += 1
            examples.append(f"{data.hex()}: {e!r}")
            return
        try:
            handle(None, bytearray(data))
        except Exception as e:
            seen["crashes"] += 1
            examples.append(f"{data.hex()}: {e!r} (receive path)")
            return
        seen["rejected"] += bad
        counted = client.bad_packets - before
        if data and data[0] & segments.SEGMENT:
            # A segment of a longer packet is joined, not decoded: counted only when it cannot be joined.
            if counted > 1:
                seen["uncounted"] += 1
        elif counted != bad:
            seen["uncounted"] += 1

    started = time.perf_counter()
    feed()
    return {"fuzz_cases": seen["cases"], "fuzz_rejected": seen["rejected"], "fuzz_crashes": seen["crashes"],
            "fuzz_uncounted": seen["uncounted"], "fuzz_s": round(time.perf_counter() - started, 1),
            "fuzz_crash_examples": examples[:5]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=150.0, help="PPG seconds to record (watch clock)")
    parser.add_argument("--speed", type=float, default=1.0, help="virtual seconds per real second")
    parser.add_argument("--disconnect-s", type=float, default=30.0)
    parser.add_argument("--fuzz", type=int, default=100_000, help="packets for the decoder fuzz run")
    parser.add_argument("--workdir", help="keep the run's files here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        result = {"benchmark": "faults"}
        result.update(asyncio.run(run_fault_scenario(work, seconds=args.seconds, speed=args.speed,
                                                     disconnect_s=args.disconnect_s)))
    result["exactly_once"] = result["missing"] == 0 and result["duplicates"] == 0 and result["unexpected"] == 0
    result["target_time_error_ms"] = 5.0
    result.update(fuzz(args.fuzz))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
