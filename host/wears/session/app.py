"""`wears session`: set up or resume a run, serve both screens, record the watch, until the run ends."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..db import Study
from ..errors import WearsError
from .engine import SessionEngine
from .protocol import load_protocol
from .server import SessionServer
from .store import RunStore


def open_run(study: Study, protocol_path: str | Path, participant: str, language: str, *,
             seed: int | None = None, slot: int | None = None, resume: bool = True) -> tuple[RunStore, bool]:
    """The participant's unfinished run of this protocol (resumed), or a new one. Returns (store, resumed)."""
    protocol = load_protocol(protocol_path)
    run_id = RunStore.unfinished(study, participant)
    if run_id is not None and not resume:
        RunStore(study, run_id).set_status("aborted", "superseded by a new run (--new-run)")
        run_id = None
    if run_id is not None:
        store = RunStore(study, run_id)
        if store.protocol_source() != protocol.source:
            raise WearsError(f"participant {participant} has unfinished run {run_id} of another version of the "
                             "protocol; finish it with that file, or abort it (wears session --new-run)")
        return store, True
    return RunStore.create(study, protocol, participant, language, seed=seed, slot=slot), False


async def serve(study: Study, protocol_path: str | Path, store: RunStore, *, address: Any = None,
                backend: type | None = None, scanner_backend: type | None = None, board: str = "",
                host: str = "127.0.0.1", port: int = 8765, reconnect_s: float = 60.0,
                ready: Callable[[SessionServer], None] | None = None) -> dict:
    """Serve the run until it completes or is aborted; returns its summary.

    reconnect_s: how long a watch that went away is reconnected (the run goes on) before its
    recording closes as interrupted and the run pauses (`SessionEngine`).

    Cancelling the task (Ctrl-C) leaves the run resumable: what was playing is marked
    interrupted and the recording closed.
    """
    protocol = load_protocol(protocol_path)
    engine = SessionEngine(study, protocol, store, backend=backend, scanner_backend=scanner_backend, board=board,
                           reconnect_s=reconnect_s)
    server = SessionServer(engine, host=host, port=port)
    await server.start()
    try:
        if address:
            try:
                await engine.connect_watch(address)
            except WearsError as e:  # the experimenter can find and connect it from the screen
                engine.say(f"{e}; use Find watches / Connect")
                print(f"wears: {e}; connect it from the experimenter screen", file=sys.stderr)
        if ready:
            ready(server)
        await engine.done.wait()
        await asyncio.sleep(0.5)  # the screens show the end
    finally:
        if not engine.done.is_set():
            await engine.close()
        await server.stop()
    return store.summary()


def print_urls(server: SessionServer) -> None:
    print(f"experimenter screen: {server.experimenter_url}", flush=True)
    print(f"participant screen:  {server.participant_url}", flush=True)
    if server.host in ("127.0.0.1", "localhost", "::1"):
        print("(localhost only; --lan serves the participant screen to a tablet on the lab network)", flush=True)
    else:
        print(f"(on the lab network: replace 127.0.0.1 by this machine's address; port {server.port})", flush=True)


