"""The flash log's cost to flash and time, against baseline revisions' logs in the same run.

Runs `watch.flashlog` (this tree's, and that of each `--base` revision from git, default
main) in the real MicroPython binary, in two settings:
- littlefs (the ESP32 and nRF ports' file system) on a RAM block device of 4 KB blocks that
  counts what it is asked to do: a full ring of `flash_log_bytes` (the PineTime's 256 KB),
  then `--records` more 230-byte records (the largest stream packet), with and without the
  live queue reading each one back as it is sent (and `littlefs_connected`: 20-byte records
  every 36 ms sent live, a connected PineTime at ATT MTU 23, per second); per record: `prog_bytes`, `erases` (4 KB
  blocks), `read_bytes`, the same as multiples of the record's own 232 bytes (`prog_x`,
  `erase_x`: erased bytes), and `fs_kb`, the file system's blocks in use at the end (littlefs
  gives a file whole blocks). littlefs copies a file from a write inside it to its end at
  the next seek or sync, and copies a file's last block when it is written after a read or
  a sync, which a ring file, or a file read back as it is written, pays and the virtual
  watch (host files) never shows;
- the unix port's files (the virtual watch's): `append_us` per record and `boot_ms` of the
  boot's check of a full ring (the median of `--repeat` runs).
Per segment size in `--segments`; the RAM the log holds is `watch.flashlog`'s own business
(tools/bench/firmware_budget.py measures it in the whole firmware). Prints one JSON object
as its last line.

    .venv/bin/python tools/bench/flashlog_flash.py [--base main,issue-3o] [--segments 512,1024] [--records 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
from pathlib import Path

from mp_cost import run

from wears.paths import FIRMWARE, REPO

_SCRIPT = r"""
import os, sys, time
mode, seg, records, live, folder = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
import watch.flashlog
from watch.flashlog import FlashLog

class Clock:  # the log's time (live == 2): 36 ms a record, 28 records of 20 bytes a second
    now = 0
    def ticks_ms(self):
        return self.now
    def ticks_diff(self, a, b):
        return a - b
clock = Clock()
watch.flashlog.time = clock

class Disk:
    def __init__(self, blocks, size=4096):
        self.size = size
        self.blocks = [bytearray(size) for _ in range(blocks)]
        self.prog = self.erase = self.read = 0
    def readblocks(self, n, buf, offset=0):
        self.read += len(buf)
        buf[:] = memoryview(self.blocks[n])[offset:offset + len(buf)]
    def writeblocks(self, n, buf, offset=0):
        self.prog += len(buf)
        self.blocks[n][offset:offset + len(buf)] = buf
    def ioctl(self, op, arg):
        if op == 4:
            return len(self.blocks)
        if op == 5:
            return self.size
        if op == 6:
            self.erase += 1
            return 0

ring = 262144
pkt = bytearray(230)
send = lambda buf, n, off: True
if mode == "lfs":
    disk = Disk(600)
    os.VfsLfs2.mkfs(disk)
    os.mount(os.VfsLfs2(disk), "/lfs")
    folder = "/lfs/log"
log = FlashLog(folder, ring, seg)
for i in range(ring // 232 + 8):  # a full ring: the steady state
    log.append(pkt, 230)
    if live:
        log.send_live(send, 8)
if mode == "lfs":
    disk.prog = disk.erase = disk.read = 0
n = 20 if live == 2 else 230  # a connected PineTime's packets at ATT MTU 23 (562 B/s), or the largest
t = time.ticks_us()
for i in range(records):
    log.append(pkt, n)
    if live:
        log.send_live(send, 8)
    clock.now += 36
us = time.ticks_diff(time.ticks_us(), t) / records
log.close()
if mode == "lfs":
    st = os.statvfs("/lfs")
    print("RESULT", disk.prog / records, disk.erase / records, disk.read / records, (st[2] - st[3]) * st[0] / 1024)
else:
    t = time.ticks_us()
    FlashLog(folder, ring, seg)
    print("RESULT", us, time.ticks_diff(time.ticks_us(), t) / 1000)
"""


_RECORD = 232  # a record on flash: its length and the 230-byte packet
_BLOCK = 4096  # the RAM disk's erase block


def _tree(rev: str | None, out: Path) -> Path:
    """A folder with `watch/flashlog.py` of `rev` (None: this tree's)."""
    (out / "watch").mkdir(parents=True)
    (out / "watch" / "__init__.py").write_text("")
    src = FIRMWARE / "watch" / "flashlog.py"
    text = src.read_text() if rev is None else subprocess.run(
        ["git", "-C", str(REPO), "show", f"{rev}:firmware/watch/flashlog.py"],
        check=True, capture_output=True, text=True).stdout
    (out / "watch" / "flashlog.py").write_text(text)
    return out


def _result(script: Path, args: list[str], tree: Path) -> list[float]:
    proc = run(script, args, heap=16 << 20, path=[tree])
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT"):
            return [float(x) for x in line.split()[1:]]
    raise RuntimeError(f"the flash log script failed ({args}):\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}")


def measure(tree: Path, seg: int, records: int, repeat: int, work: Path) -> dict:
    script = work / "flashlog_cost.py"
    script.write_text(_SCRIPT)
    out: dict = {}
    for live in (0, 1):
        prog, erases, read, used = _result(script, ["lfs", str(seg), str(records), str(live), "-"], tree)
        out["littlefs_live" if live else "littlefs"] = {
            "prog_bytes": round(prog), "erases": round(erases, 2), "read_bytes": round(read), "fs_kb": round(used),
            "prog_x": round(prog / _RECORD, 2), "erase_x": round(erases * _BLOCK / _RECORD, 2)}
    # Connected at the PineTime's rates: 20-byte records (22 on flash) every 36 ms, sent live.
    prog, erases, read, used = _result(script, ["lfs", str(seg), str(records * 10), "2", "-"], tree)
    per_s = 1000 / 36
    out["littlefs_connected"] = {
        "prog_bytes_s": round(prog * per_s), "erases_s": round(erases * per_s, 2), "read_bytes_s": round(read * per_s),
        "prog_x": round(prog / 22, 2), "erase_x": round(erases * _BLOCK / 22, 2)}
    appends, boots = [], []
    for k in range(repeat):
        folder = work / f"unix-{tree.name}-{seg}-{k}"
        us, ms = _result(script, ["unix", str(seg), str(records), "1", str(folder)], tree)
        appends.append(us)
        boots.append(ms)
    out["append_us"] = round(statistics.median(appends), 1)
    out["boot_ms"] = round(statistics.median(boots), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="git revisions whose flash logs are baselines, comma-separated")
    parser.add_argument("--segments", default="512,1024", help="segment sizes, comma-separated")
    parser.add_argument("--records", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    result: dict = {"benchmark": "flashlog_flash", "base": args.base, "records": args.records, "segments": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        trees = {"this": _tree(None, work / "this")}
        for k, rev in enumerate(args.base.split(",")):
            trees[rev] = _tree(rev, work / f"base{k}")
        for seg in (int(s) for s in args.segments.split(",")):
            result["segments"][str(seg)] = {name: measure(tree, seg, args.records, args.repeat, work)
                                            for name, tree in trees.items()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
