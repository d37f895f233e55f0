"""The `wears` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from bleak.exc import BleakError

from .errors import WearsError


def _backend(args: argparse.Namespace):
    from .ble import backends
    return backends(virtual=args.virtual)


def _watch(args: argparse.Namespace):
    """(address, client backend) of the watch a command names: by address over BLE (or the
    virtual watches' bridge with --virtual), or by --port over the USB serial link."""
    if getattr(args, "port", None):
        if args.address:
            raise WearsError("name the watch by its address or by --port, not both")
        from .serial_link import serial_backend
        return args.port, serial_backend(args.baud)
    if not args.address:
        raise WearsError("name the watch: its address (see `wears scan`) or --port for the USB serial link")
    return args.address, _backend(args)[0]


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
                                flash_dir=work / "flash", link=args.link,
                                heap_extra=args.heap_extra * 1024) as vw:
            where = f"on serial port {vw.serial_port}" if vw.serial_port else f"at {vw.address}"
            print(f"virtual watch {vw.name} {where} ({scenario.duration_s:.0f} s scenario, "
                  f"speed {args.speed or 'max'}x); its labels: {labels}. Waiting for a host to connect; "
                  "Ctrl-C stops it.", flush=True)
            return await vw.wait()

    return asyncio.run(run()) or 0


def cmd_scan(args: argparse.Namespace) -> int:
    from bleak import BleakScanner
    from watch import protocol as P

    async def run() -> None:
        _, scanner_backend = _backend(args)
        kwargs = {"backend": scanner_backend} if scanner_backend else {}
        found = await BleakScanner.discover(timeout=args.timeout, service_uuids=[P.SERVICE_UUID],
                                            return_adv=True, **kwargs)
        if not found:
            print("no WEARS watch found" + ("" if args.virtual else " (try --virtual for the virtual watch)"))
        for device, adv in found.values():
            print(f"{device.address}  {adv.local_name or device.name or '?'}  rssi {adv.rssi}")

    asyncio.run(run())
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from .db import Study
    from .record import record

    address, client_backend = _watch(args)
    study = Study.open(args.db)
    annotations = _read_annotations(args.annotations) if args.annotations else None
    bar = _progress_bar("recording")
    on_packet = None
    if args.lsl:
        from .lsl import LslOutlet
        on_packet = LslOutlet(str(address), str(address)).handle

    async def run():
        return await record(study, address, participant=args.participant, duration_s=args.duration,
                            backend=client_backend, annotations=annotations, on_packet=on_packet,
                            progress=lambda st: bar(st.seconds(), args.duration))

    sid, stats = asyncio.run(run())
    print(json.dumps({"session": sid, "samples": {str(k): v for k, v in stats.samples.items()},
                      "lost_samples": stats.lost_samples, "bad_packets": stats.bad_packets,
                      "duplicates": stats.duplicates, "predictions": stats.predictions}))
    return 0


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
    from .recipe import load_recipe, parse_recipe
    from .report import write_html
    from .train import DEFAULT_RECIPE, train_recipe

    recipe = load_recipe(args.recipe) if args.recipe else parse_recipe(DEFAULT_RECIPE)
    bars: dict = {}

    def progress(stage: str, done: float, total: float) -> None:
        bars.setdefault(stage, _progress_bar(stage))(done, total)

    trained = train_recipe(recipe, study=args.study, progress=progress)
    trained.save(args.output)
    report = Path(args.output).with_suffix(".report.json")
    report.write_text(json.dumps(trained.report, indent=2))
    page = report.with_suffix(".html")
    write_html(trained.report, page)
    print(json.dumps({k: trained.report.get(k) for k in ("protocol", "n_windows", "accuracy", "macro_f1",
                                                          "balanced_accuracy")}))
    print(f"model: {args.output}  report: {report}  {page}", file=sys.stderr)
    return 0


def cmd_import_e4(args: argparse.Namespace) -> int:
    from .db import Study
    from .importers import import_e4

    study = Study.open(args.study)
    folders = []
    for d in map(Path, args.folders):
        if not d.is_dir():
            raise WearsError(f"{d}: no such folder")
        if (d / "E4").is_dir() or (d / "BVP.csv").exists():
            folders.append(d)
        else:  # a folder of subjects
            folders += sorted(s for s in d.iterdir() if (s / "E4").is_dir() or (s / "BVP.csv").exists())
    if not folders:
        raise WearsError(f"no E4 export (BVP.csv, or a subject folder with E4/) in {' '.join(args.folders)}")
    if args.participant and len(folders) > 1:
        raise WearsError(f"--participant names one recording, but {len(folders)} were found")
    bar = _progress_bar("importing")
    out = []
    for i, folder in enumerate(folders):
        sid = import_e4(study, folder, participant=args.participant)
        out.append({"session": sid, "participant": study.session(sid)["participant_id"], "folder": str(folder)})
        bar(i + 1, len(folders))
    print(json.dumps(out))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .blob import load_key
    from .export import export_blob
    from .train import TrainedModel

    trained = TrainedModel.load(args.model)
    if trained.kind != "extratrees":
        raise WearsError(f"{args.model} is a {trained.kind} model; the watch runs tree ensembles so far "
                         "(train with models.deploy = \"extratrees\")")
    blob, info = export_blob(trained, load_key(args.key))
    Path(args.output).write_bytes(blob)
    # The blob does not carry the window grid or the calibration length: the board profile's
    # "features" must match them (docs/training.md, Deploying a model).
    info["board_features"] = {"window_s": trained.window_s, "step_s": trained.step_s,
                              **({"baseline_windows": trained.normalise["windows"]} if trained.normalise else {})}
    print(json.dumps(info))
    return 0


def cmd_export_data(args: argparse.Namespace) -> int:
    from .db import Study
    from .export_data import export_bids, export_tables

    if not Path(args.db).exists():
        raise WearsError(f"{args.db}: no such study database")
    study = Study.open(args.db)
    sessions = args.session or None
    if args.format == "bids":
        files = export_bids(study, args.output, sessions=sessions, task=args.task)
    else:
        files = export_tables(study, args.output, fmt=args.format, sessions=sessions)
    print(json.dumps({"format": args.format, "output": str(args.output), "files": len(files)}))
    return 0


def cmd_flash_model(args: argparse.Namespace) -> int:
    from .client import WatchClient

    blob = Path(args.blob).read_bytes()

    address, client_backend = _watch(args)

    async def run() -> int:
        async with WatchClient(address, backend=client_backend) as watch:
            return await watch.upload_model(blob, _progress_bar("uploading"))

    model_id = asyncio.run(run())
    print(f"the watch now runs model {model_id:08x}")
    return 0


def cmd_live(args: argparse.Namespace) -> int:
    from .live import live

    watches = [(address, _backend(args)[0]) for address in args.address]
    if args.port:
        from .serial_link import serial_backend
        watches += [(port, serial_backend(args.baud)) for port in args.port]
    if not watches:
        raise WearsError("name the watches: their addresses (see `wears scan`) and/or --port for USB serial")
    asyncio.run(live(watches, duration_s=args.duration, stream=not args.no_stream, lsl=args.lsl))
    return 0


def cmd_session(args: argparse.Namespace) -> int:
    from .db import Study
    from .session.app import open_run, print_urls, serve

    study = Study.open(args.db)
    store, resumed = open_run(study, args.protocol, args.participant, args.language, seed=args.seed,
                              slot=args.slot, resume=not args.new_run)
    this_run = store.run()
    print(f"{'resuming' if resumed else 'new'} run {this_run.id} for {this_run.participant} ({this_run.language}), "
          f"clip order {this_run.clip_order} (seed {this_run.order_seed})", flush=True)
    client_backend, scanner_backend = _backend(args)
    host = "0.0.0.0" if args.lan else args.host

    async def run() -> dict:
        # Ctrl-C or a TERM signal: the run stays resumable (what was playing is marked interrupted).
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        return await serve(study, args.protocol, store, address=args.address, backend=client_backend,
                           scanner_backend=scanner_backend, board=args.board, host=host, port=args.port,
                           ready=print_urls)

    try:
        summary = asyncio.run(run())
    except asyncio.CancelledError:
        print(f"stopped; run {this_run.id} resumes with the same command", file=sys.stderr)
        return 130
    print(json.dumps(summary))
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

    def with_port(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        with_virtual(p)
        p.add_argument("address", nargs="?", help="the watch's Bluetooth address (or use --port)")
        p.add_argument("--port", help="reach the watch over its USB serial link instead (e.g. /dev/ttyACM0, "
                                      "or the port `wears sim --link serial` prints)")
        p.add_argument("--baud", type=int, default=921600, help="line rate of a UART bridge (USB CDC ignores it)")
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
    p.add_argument("--link", choices=("ble", "serial"), default="ble",
                   help="serve the host over BLE or over the USB serial link (a pseudo-terminal)")
    p.add_argument("--heap-extra", type=int, default=0, metavar="KB",
                   help="run above the board's heap budget (the PineTime needs 64: hardware/README.md)")
    p.set_defaults(func=cmd_sim)

    p = with_virtual(sub.add_parser("scan", help="find WEARS watches"))
    p.add_argument("--timeout", type=float, default=5.0)
    p.set_defaults(func=cmd_scan)

    p = with_port(sub.add_parser("record", help="record a watch into a study database"))
    p.add_argument("--db", required=True, help="study database (SQLite), created if missing")
    p.add_argument("--participant", required=True, help="pseudonymous participant id")
    p.add_argument("--duration", type=float, required=True, help="seconds of the watch's clock to record")
    p.add_argument("--annotations", help="CSV start_s,end_s,label[,condition] on the sample timeline")
    p.add_argument("--lsl", action="store_true", help="also publish streams and markers on Lab Streaming Layer")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("train", help="run a training recipe: evaluate, ablate, fit, report (JSON + HTML)")
    p.add_argument("recipe", nargs="?", help="training/recipes/*.toml (default: ExtraTrees on valence labels)")
    p.add_argument("--study", "--db", dest="study", help="study database (overrides the recipe's data.study)")
    p.add_argument("-o", "--output", default="model.pkl")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("import", help="import recordings made elsewhere into a study database")
    kinds = p.add_subparsers(dest="kind", required=True)
    p = kinds.add_parser("e4", help="Empatica E4 exports (BVP.csv, ACC.csv, annotations.csv)")
    p.add_argument("folders", nargs="+", help="E4 folders, subject folders holding E4/, or folders of subjects")
    p.add_argument("--study", required=True, help="study database (SQLite), created if missing")
    p.add_argument("--participant", help="participant id when importing one folder (default: its name)")
    p.set_defaults(func=cmd_import_e4)

    p = sub.add_parser("export", help="quantize and sign a trained model into a model blob")
    p.add_argument("model")
    p.add_argument("--key", required=True, help="the watch key file (32 bytes)")
    p.add_argument("-o", "--output", default="model.wbl")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("export-data", help="write recordings out: CSV or Parquet per stream, or a BIDS dataset")
    p.add_argument("--db", required=True, help="study database")
    p.add_argument("--format", choices=("csv", "parquet", "bids"), default="csv")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--session", type=int, action="append", help="a session id (repeat; default: the whole study)")
    p.add_argument("--task", default="wears", help="BIDS task label")
    p.set_defaults(func=cmd_export_data)

    p = sub.add_parser("flash", help="install a model on a watch")
    flash = p.add_subparsers(dest="what", required=True)
    p = with_port(flash.add_parser("model", help="upload a signed model blob over BLE or USB serial"))
    p.add_argument("blob")
    p.set_defaults(func=cmd_flash_model)

    p = with_virtual(sub.add_parser("live", help="a dashboard of watches: heart rate, signal, battery, loss, "
                                                 "backfill, predictions"))
    p.add_argument("address", nargs="*", help="Bluetooth addresses (one row each)")
    p.add_argument("--port", action="append", help="a watch on a USB serial port (repeat for several)")
    p.add_argument("--baud", type=int, default=921600, help="line rate of a UART bridge (USB CDC ignores it)")
    p.add_argument("--duration", type=float, default=0, help="stop after this many watch seconds (0: never)")
    p.add_argument("--no-stream", action="store_true", help="do not start the sample streams (heart rate and "
                                                          "predictions only)")
    p.add_argument("--lsl", action="store_true", help="also publish streams and markers on Lab Streaming Layer")
    p.set_defaults(func=cmd_live)

    p = with_virtual(sub.add_parser("session", help="run a video-stimulus labelling session (web app + recording)"))
    p.add_argument("protocol", help="the study protocol file (TOML; examples/study/protocol.toml)")
    p.add_argument("--db", required=True, help="study database (SQLite), created if missing")
    p.add_argument("--participant", required=True, help="pseudonymous participant id (e.g. P07), never a name")
    p.add_argument("--language", default="en", help="the participant's language (en, hi)")
    p.add_argument("--address", help="the watch to record (or pair from the experimenter screen)")
    p.add_argument("--board", default="", help="the watch's board profile name, stored with the device")
    p.add_argument("--seed", type=int, help="seed of a random clip order (default: the protocol's, else drawn)")
    p.add_argument("--slot", type=int, help="row of the counterbalancing square (default: next for this protocol)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--lan", action="store_true", help="listen on the lab network (the tokens guard both screens)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--new-run", action="store_true",
                   help="start a new run even if this participant has an unfinished one (which is marked aborted)")
    p.set_defaults(func=cmd_session)

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
