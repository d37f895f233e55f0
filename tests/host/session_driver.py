"""Drives a session in Debian's headless chromium (Playwright, never a downloaded browser).

Shared by the session tests and tools/bench/onset_latency.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

from wears.ble.virtual import VirtualBleakClient, VirtualBleakScanner
from wears.db import Study
from wears.session.app import open_run, serve
from wears.session.server import SessionServer

from .waiting import until

__all__ = ["answer_rating", "browser", "pass_preflight", "session_server", "take_form", "until"]

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--autoplay-policy=no-user-gesture-required", "--mute-audio"]


@contextlib.asynccontextmanager
async def browser() -> AsyncIterator:
    from playwright.async_api import async_playwright

    if not Path(CHROMIUM).exists():
        raise AssertionError(f"{CHROMIUM} is missing: run tools/setup.sh as root (apt-get install chromium ffmpeg)")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            yield b
        finally:
            await b.close()


@contextlib.asynccontextmanager
async def session_server(study: Study, protocol: Path, participant: str, language: str, address: str | None,
                         *, port: int = 0, backend: type = VirtualBleakClient) -> AsyncIterator[SessionServer]:
    """`serve` in a task, connected to the virtual watch at `address` (None: paired later); yields the server."""
    store, _ = open_run(study, protocol, participant, language)
    ready: asyncio.Future = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(serve(study, protocol, store, address=address, backend=backend,
                                       scanner_backend=VirtualBleakScanner, port=port,
                                       ready=lambda server: ready.set_result(server)))
    done, _ = await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # raises what went wrong
    server = ready.result()
    server.task = task
    try:
        yield server
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def pass_preflight(experimenter, engine, timeout: float = 60.0) -> None:
    """Press the pre-flight button until every check passes (the watch needs its first heart-rate windows)."""
    deadline = time.monotonic() + timeout
    while True:
        before = engine.preflight_report
        await experimenter.click("#preflight")
        await until(lambda: engine.preflight_report is not before, 30, "the pre-flight report")
        if engine.preflight_report["ok"]:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"pre-flight never passed: {engine.preflight_report}")
        await asyncio.sleep(0.5)


async def answer_rating(participant, step: int, values: tuple[int, ...], how: str = "mouse") -> None:
    """Answer the form of step `step` (SAM scales or an attention check) by mouse, touch or keyboard."""
    await participant.wait_for_selector(f'main[data-step="{step}"] .scale button')
    if how == "keyboard":
        for v in values:
            await participant.keyboard.press(str(v))
        await participant.keyboard.press("Enter")
        return
    scales = await participant.eval_on_selector_all(".scale", "rows => rows.map(r => r.dataset.scale)")
    for scale, v in zip(scales, values):
        button = participant.locator(f'.scale button[data-scale="{scale}"][data-value="{v}"]')
        await (button.tap() if how == "touch" else button.click())
    await (participant.locator("#next").tap() if how == "touch" else participant.click("#next"))


async def take_form(participant, engine, values: tuple[int, ...], how: str = "mouse") -> None:
    """Answer the rating or attention form the run shows now, and wait for the engine to take it."""
    step = engine.current
    await answer_rating(participant, step.index, values, how)
    await until(lambda: engine.step != step.index, 20, f"the {step.kind} form to be taken")
