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


def _positive_s(text: str) -> float:
    """An argparse type: seconds, more than 0."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected seconds above 0, got {text!r}")
    return value


def _progress_bar(label: str):
    def show(done: float, total: float | None) -> None:
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

    client_backend, _ = _backend(args)
    if args.port:
        if args.address:
            raise WearsError("name the watches by address, or one by --port, not both")
        from .serial_link import serial_backend
        args.address, client_backend = [args.port], serial_backend(args.baud)
    study = Study.open(args.db)
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
    on_packet = None
    if args.lsl:
        from .lsl import LslOutlet
        on_packet = LslOutlet(str(args.address[0]), str(args.address[0])).handle
    sid, stats = asyncio.run(record(study, args.address[0], participant=participants[0], duration_s=args.duration,
                                    backend=client_backend, annotations=annotations, reconnect_s=args.reconnect_s,
                                    on_packet=on_packet, progress=lambda st: bar(st.seconds(), args.duration)))
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
    from .export import export_model
    from .train import TrainedModel

    trained = TrainedModel.load(args.model)
    if args.kind == "trees" and trained.kind != "extratrees":
        raise WearsError(f"{args.model} is a {trained.kind} model; `--kind trees` exports a tree ensemble "
                         "(train with models.deploy = \"extratrees\", or export with --kind mlp)")
    info = export_model(args.model, args.key, args.output, formats=args.format, kind=args.kind,
                        board=args.board)
    # The blob carries the window grid and the calibration length (format version 2), and the
    # watch computes its features with them; repeated here for board profiles that set them.
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


def cmd_build(args: argparse.Namespace) -> int:
    from .build import write_build

    out = write_build(args.board, args.output)
    print(f"{out}: firmware for {args.board} and manifest.py (freeze the `watch` package into a custom build)")
    return 0


def cmd_flash_firmware(args: argparse.Namespace) -> int:
    from .flash import flash_firmware

    bar = _progress_bar("copying")
    report = flash_firmware(args.port, args.board, key_path=args.key, model=args.model, with_model=not args.no_model,
                            frozen=args.frozen, progress=lambda _what, done, total: bar(done, total))
    print(json.dumps({"board": report["board"], "arch": report["arch"], "files": len(report["files"]),
                      "model_id": f"{report['model_id']:08x}" if report["model_id"] is not None else None}))
    print(f"flashed {report['board']} on {args.port}, every file checked by SHA-256; the board is resetting. "
          f"Keep {args.key}: models for this watch are signed with it.", file=sys.stderr)
    return 0


def cmd_flash_model(args: argparse.Namespace) -> int:
    from .blob import load_key, read_blob, resign
    from .feature_specs import require_current
    from .flash import flash_model_ble, flash_model_serial

    blob = Path(args.blob).read_bytes()
    if args.key:  # sign for this watch (a shipped model, or one exported for another key)
        blob = resign(blob, load_key(args.key))
    info = read_blob(blob)
    require_current(info.feature_spec, info.n_features)  # a retired feature set: refused before the upload
    if args.port and args.serial_link:
        from .serial_link import serial_backend
        model_id = asyncio.run(flash_model_ble(args.port, blob, backend=serial_backend(args.baud),
                                               progress=_progress_bar("uploading")))
    elif args.port:
        model_id = flash_model_serial(args.port, blob, board=args.board, progress=_progress_bar("uploading"))
    else:
        client_backend, _ = _backend(args)
        model_id = asyncio.run(flash_model_ble(args.ble, blob, backend=client_backend,
                                               progress=_progress_bar("uploading")))
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
        assert task is not None  # run() is that task
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        return await serve(study, args.protocol, store, address=args.address, backend=client_backend,
                           scanner_backend=scanner_backend, board=args.board, host=host, port=args.port,
                           reconnect_s=args.reconnect_s, ready=print_urls)

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
                   help="run above the board's heap budget (hardware/README.md: heap per board)")
    p.set_defaults(func=cmd_sim)

    p = with_virtual(sub.add_parser("scan", help="find WEARS watches"))
    p.add_argument("--timeout", type=float, default=5.0)
    p.set_defaults(func=cmd_scan)

    p = with_virtual(sub.add_parser("record", help="record watches into a study database"))
    p.add_argument("address", nargs="*", help="watch address or advertised name; several record at once")
    p.add_argument("--port", help="record the watch on this USB serial link instead (e.g. /dev/ttyACM0, "
                                  "or the port `wears sim --link serial` prints)")
    p.add_argument("--baud", type=int, default=921600, help="line rate of a UART bridge (USB CDC ignores it)")
    p.add_argument("--db", required=True, help="study database (SQLite), created if missing")
    p.add_argument("--participant", action="append", help="pseudonymous participant id (one per watch)")
    p.add_argument("--duration", type=float, help="seconds of the watch's clock to record")
    p.add_argument("--resume", type=int, metavar="SESSION",
                   help="carry on an interrupted session: keep what it committed, backfill the rest")
    p.add_argument("--reconnect-s", type=_positive_s, default=60.0,
                   help="give up after this many seconds without a connection (default 60)")
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

    p = sub.add_parser("export", help="quantize and sign a trained model: blob, ONNX, TFLite, model card")
    p.add_argument("model", help="a model written by `wears train`")
    p.add_argument("--key", required=True, help="the watch key file (32 bytes)")
    p.add_argument("-o", "--output", default="model.wbl", help="the blob; other formats go next to it")
    p.add_argument("--format", action="append", choices=["blob", "onnx", "tflite"],
                   help="formats to write (repeatable; default: blob and onnx, plus tflite for an MLP)")
    p.add_argument("--kind", choices=["trees", "mlp"], default="trees",
                   help="trees: the trained forest; mlp: the trained int8 MLP (deploy mlp or auto), "
                        "or for a forest model an int8 MLP 12-16-2 fitted on the same windows")
    p.add_argument("--board", help="board profile whose model budget the blob must fit")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("export-data", help="write recordings out: CSV or Parquet per stream, or a BIDS dataset")
    p.add_argument("--db", required=True, help="study database")
    p.add_argument("--format", choices=("csv", "parquet", "bids"), default="csv")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--session", type=int, action="append", help="a session id (repeat; default: the whole study)")
    p.add_argument("--task", default="wears", help="BIDS task label")
    p.set_defaults(func=cmd_export_data)

    p = sub.add_parser("build", help="cross-compile the firmware for a board and write a freeze manifest")
    p.add_argument("--board", required=True)
    p.add_argument("-o", "--output", default="build")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("flash", help="install firmware or a model on a watch")
    flash = p.add_subparsers(dest="what", required=True)
    p = flash.add_parser("firmware", help="firmware, board profile, watch key and model over USB (MicroPython)")
    p.add_argument("--port", required=True, help="serial port of a board running MicroPython")
    p.add_argument("--board", required=True, help="board profile (hardware/<board>.json)")
    p.add_argument("--key", default="watch.key", help="the watch key file; created when missing")
    p.add_argument("--model", help="model blob (default: the board's shipped model in models/)")
    p.add_argument("--no-model", action="store_true", help="install no model")
    p.add_argument("--frozen", action="store_true", help="the board's MicroPython has `watch` frozen in")
    p.set_defaults(func=cmd_flash_firmware)
    p = with_virtual(flash.add_parser("model", help="upload a signed model blob over BLE or USB"))
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--ble", metavar="ADDRESS", help="the watch's BLE address")
    where.add_argument("--port", help="the watch's serial port: MicroPython's REPL, or with --serial-link the "
                                      "WEARS serial link of a watch whose board.json says \"link\": \"serial\"")
    p.add_argument("--serial-link", action="store_true",
                   help="the port speaks the WEARS protocol (USB serial link), not the REPL: upload as over BLE")
    p.add_argument("--baud", type=int, default=921600, help="line rate of a UART bridge (USB CDC ignores it)")
    p.add_argument("--board", default="esp32s3-wrist", help="board profile (with --port)")
    p.add_argument("--key", help="re-sign the blob with this watch key first")
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
    p.add_argument("--reconnect-s", type=_positive_s, default=60.0,
                   help="how long a watch that went away is reconnected while the run goes on; after that its "
                        "recording closes as interrupted and the run pauses (default 60)")
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
