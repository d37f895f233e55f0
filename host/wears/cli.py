"""The `wears` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from bleak.exc import BleakError

from .errors import WearsError


def _backend(args: argparse.Namespace):
    from .ble import backends
    return backends(virtual=args.virtual)


def _progress_bar(label: str):
    def show(done: float, total: float) -> None:
        width = 30
        frac = min(1.0, done / total) if total else 1.0
        print(f"\r  {label} [{'#' * int(frac * width):<{width}}] {frac * 100:5.1f}%", end="", file=sys.stderr,
              flush=True)
        if frac >= 1.0:
            print(file=sys.stderr)
    return show


# Commands ---------------------------------------------------------------------------------

def cmd_sim(args: argparse.Namespace) -> int:
    from .sim.runner import VirtualWatch
    from .sim.scenario import Scenario, from_e4, synthetic

    if args.e4:
        scenario = from_e4(args.e4)
    elif args.scenario:
        scenario = Scenario.read(args.scenario)
    else:
        scenario = synthetic(args.seed, participant=args.participant)
    work = Path(args.flash_dir or f"runs/sim-{args.name}")
    work.mkdir(parents=True, exist_ok=True)
    path = work / "scenario.wscn"
    scenario.write(path)
    labels = work / "annotations.csv"
    labels.write_text("start_s,end_s,label\n" + "".join(f"{a},{b},{c}\n" for a, b, c in scenario.episodes))

    async def run() -> int:
        async with VirtualWatch(path, board=args.board, speed=args.speed, name=args.name,
                                flash_dir=work / "flash") as vw:
            print(f"virtual watch {vw.name} at {vw.address} ({scenario.duration_s:.0f} s scenario, "
                  f"speed {args.speed or 'max'}x); its labels: {labels}. Waiting for a host to connect; "
                  "Ctrl-C stops it.", flush=True)
            return await vw.wait()

    return asyncio.run(run()) or 0


def cmd_scan(args: argparse.Namespace) -> int:
    from .scan import scan

    async def run() -> None:
        client_backend, _ = _backend(args)
        found = await scan(args.timeout, backend=client_backend)
        if not found:
            print("no WEARS watch found" + ("" if args.virtual else " (try --virtual for the virtual watch)"))
        for device, adv in found:
            print(f"{device.address}  {adv.local_name or device.name or '?'}  rssi {adv.rssi}")

    asyncio.run(run())
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from .db import Study
    from .record import record

    study = Study.open(args.db)
    client_backend, _ = _backend(args)
    if args.resume is not None:
        return _resume(args, study, client_backend)
    if not args.address or args.duration is None:
        raise WearsError("wears record needs the watch's address (or name) and --duration, or --resume SESSION")
    participants = args.participant or []
    if len(participants) != len(args.address):
        raise WearsError(f"{len(args.address)} watch(es) but {len(participants)} --participant: give one per watch")
    if len(args.address) > 1:
        return _record_lab(args, study, client_backend)
    annotations = _read_annotations(args.annotations) if args.annotations else None
    bar = _progress_bar("recording")
    sid, stats = asyncio.run(record(study, args.address[0], participant=participants[0], duration_s=args.duration,
                                    backend=client_backend, annotations=annotations, reconnect_s=args.reconnect_s,
                                    progress=lambda st: bar(st.seconds(), args.duration)))
    print(json.dumps(_summary(sid, stats)))
    return 0


def _resume(args: argparse.Namespace, study, client_backend) -> int:
    from .record import record

    session = study.session(args.resume)
    target = json.loads(study.provenance(args.resume).get("record_target", "{}"))
    duration = args.duration or target.get("duration_s")
    until = None if duration else target.get("until_s")
    address = args.address[0] if args.address else session["address"]
    if (duration is None and until is None) or address is None:
        raise WearsError(f"session {args.resume}: give the watch's address and --duration to resume it")
    bar = _progress_bar("resuming")
    sid, stats = asyncio.run(record(study, address, duration_s=duration, until_s=until, backend=client_backend,
                                    resume=session["id"], reconnect_s=args.reconnect_s,
                                    progress=lambda st: bar(st.seconds(), duration or until)))
    print(json.dumps(_summary(sid, stats)))
    return 0


def _record_lab(args: argparse.Namespace, study, client_backend) -> int:
    from .lab import LabWatch, record_lab, status_table

    watches = [LabWatch(a, p) for a, p in zip(args.address, args.participant)]
    asyncio.run(record_lab(study, watches, duration_s=args.duration, backend=client_backend,
                           reconnect_s=args.reconnect_s))
    print(status_table(watches), file=sys.stderr)
    print(json.dumps([{"address": w.address, "error": w.error, **(_summary(w.session_id, w.stats)
                                                                  if w.session_id else {})} for w in watches]))
    return 0 if all(w.session_id for w in watches) else 1


def _summary(sid: int, stats) -> dict:
    return {"session": sid, "samples": {str(k): v for k, v in stats.samples.items()},
            "lost_samples": stats.lost_samples, "bad_packets": stats.bad_packets, "duplicates": stats.duplicates,
            "predictions": stats.predictions, "backfilled": stats.backfilled, "reconnects": stats.reconnects,
            "lost_records": stats.lost_records,
            "clock": {str(b): {k: round(v, 3) for k, v in c.items()} for b, c in stats.clock.items()}}


def _read_annotations(path: str) -> list[tuple[float, float, str]]:
    rows = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip() or line.startswith("start_s"):
            continue
        parts = line.split(",")
        try:
            rows.append((float(parts[0]), float(parts[1]), parts[2].strip()))
        except (IndexError, ValueError) as e:
            raise WearsError(f"{path}:{n}: expected start_s,end_s,label[,condition], got {line!r}") from e
    return rows


def cmd_train(args: argparse.Namespace) -> int:
    from .db import Study
    from .train import train

    trained = train(Study.open(args.db), window_s=args.window, step_s=args.step, seed=args.seed)
    trained.save(args.output)
    report = Path(args.output).with_suffix(".report.json")
    report.write_text(json.dumps(trained.report, indent=2))
    print(json.dumps({k: trained.report.get(k) for k in ("protocol", "n_windows", "accuracy", "macro_f1",
                                                          "balanced_accuracy")}))
    print(f"model: {args.output}  report: {report}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .blob import load_key
    from .export import export_blob
    from .train import TrainedModel

    trained = TrainedModel.load(args.model)
    blob, info = export_blob(trained, load_key(args.key))
    Path(args.output).write_bytes(blob)
    print(json.dumps(info))
    return 0


def cmd_flash_model(args: argparse.Namespace) -> int:
    from .client import WatchClient

    blob = Path(args.blob).read_bytes()

    async def run() -> int:
        client_backend, _ = _backend(args)
        async with WatchClient(args.address, backend=client_backend) as watch:
            return await watch.upload_model(blob, _progress_bar("uploading"))

    model_id = asyncio.run(run())
    print(f"the watch now runs model {model_id:08x}")
    return 0


def cmd_live(args: argparse.Namespace) -> int:
    from .live import live

    client_backend, _ = _backend(args)
    asyncio.run(live(args.address, backend=client_backend, duration_s=args.duration))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import demo

    return asyncio.run(demo(Path(args.workdir), speed=args.speed, seed=args.seed))


# Parser ------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wears", description="Wrist emotion AI on real watches.")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_virtual(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--virtual", action="store_true", help="reach virtual watches (`wears sim`), not BLE")
        return p

    p = sub.add_parser("sim", help="run a virtual watch (real MicroPython, simulated sensors and radio)")
    p.add_argument("--scenario", help="a scenario file (.wscn) to replay")
    p.add_argument("--e4", help="replay an Empatica E4 export folder")
    p.add_argument("--seed", type=int, default=1, help="seed of the synthetic scenario")
    p.add_argument("--participant", default="P01")
    p.add_argument("--speed", type=float, default=30.0, help="virtual seconds per real second (0: max)")
    p.add_argument("--board", default="esp32s3-wrist")
    p.add_argument("--name", default="WEARS-VW01")
    p.add_argument("--flash-dir", help="folder for the watch's files")
    p.set_defaults(func=cmd_sim)

    p = with_virtual(sub.add_parser("scan", help="find WEARS watches"))
    p.add_argument("--timeout", type=float, default=5.0)
    p.set_defaults(func=cmd_scan)

    p = with_virtual(sub.add_parser("record", help="record watches into a study database"))
    p.add_argument("address", nargs="*", help="watch address or advertised name; several record at once")
    p.add_argument("--db", required=True, help="study database (SQLite), created if missing")
    p.add_argument("--participant", action="append", help="pseudonymous participant id (one per watch)")
    p.add_argument("--duration", type=float, help="seconds of the watch's clock to record")
    p.add_argument("--resume", type=int, metavar="SESSION",
                   help="carry on an interrupted session: keep what it committed, backfill the rest")
    p.add_argument("--reconnect-s", type=float, default=60.0,
                   help="give up after this many seconds without a connection (default 60)")
    p.add_argument("--annotations", help="CSV start_s,end_s,label[,condition] on the sample timeline")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("train", help="train a valence model from a study database")
    p.add_argument("--db", required=True)
    p.add_argument("--window", type=int, default=30, help="window length in s")
    p.add_argument("--step", type=int, default=5, help="window step in s")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", default="model.pkl")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="quantize and sign a trained model into a model blob")
    p.add_argument("model")
    p.add_argument("--key", required=True, help="the watch key file (32 bytes)")
    p.add_argument("-o", "--output", default="model.wbl")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("flash", help="install a model on a watch")
    flash = p.add_subparsers(dest="what", required=True)
    p = with_virtual(flash.add_parser("model", help="upload a signed model blob over BLE"))
    p.add_argument("address")
    p.add_argument("blob")
    p.set_defaults(func=cmd_flash_model)

    p = with_virtual(sub.add_parser("live", help="heart rate, signal quality and predictions as they arrive"))
    p.add_argument("address")
    p.add_argument("--duration", type=float, default=0, help="stop after this many watch seconds (0: never)")
    p.set_defaults(func=cmd_live)

    p = sub.add_parser("demo", help="the whole path on virtual watches: record, train, export, flash, predict")
    p.add_argument("--workdir", default="runs/demo")
    p.add_argument("--speed", type=float, default=0.0, help="virtual seconds per real second (0: max)")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except WearsError as e:
        print(f"wears: {e}", file=sys.stderr)
        return 1
    except (BleakError, OSError) as e:
        if isinstance(e, OSError) and e.filename:  # a file the user named
            print(f"wears: {e.filename}: {e.strerror}", file=sys.stderr)
        else:  # no adapter, no D-Bus, no permission
            print(f"wears: Bluetooth is not available here ({e}); use --virtual for virtual watches",
                  file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
