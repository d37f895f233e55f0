"""The session web app (aiohttp): the participant's screen and the experimenter's, each behind its token.

    /p/<participant token>/        participant screen; its websocket and the clips only
    /x/<experimenter token>/       experimenter screen and controls
    /static/...                    the pages' scripts and styles (no secrets in them)

The participant token is stored with the run (a reloaded tablet or a restarted host keeps its
address); the experimenter token is new at every start and printed only to the console. A
participant screen that guesses experimenter routes gets 404, and its websocket accepts only
the participant's messages.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from importlib import resources
from pathlib import Path

from aiohttp import WSMsgType, web

from ..errors import WearsError
from .engine import SessionEngine

STATIC = Path(str(resources.files("wears.session") / "static"))


class SessionServer:
    """Serves one engine. `await server.start()`, then `await server.stop()`.

    Args:
        engine: the run's engine.
        host: the address to listen on; 127.0.0.1 by default. Use 0.0.0.0 to serve a
            participant's tablet on the lab network (the tokens guard both screens).
        port: TCP port (0 picks a free one).
    """

    def __init__(self, engine: SessionEngine, *, host: str = "127.0.0.1", port: int = 8765) -> None:
        self.engine = engine
        self.host, self.port = host, port
        self.participant_token = engine.run.participant_token
        self.experimenter_token = secrets.token_urlsafe(16)
        self._runner: web.AppRunner | None = None
        app = web.Application()
        app.add_routes([
            web.get("/p/{token}/", self._participant_page),
            web.get("/p/{token}/ws", self._participant_ws),
            web.get("/p/{token}/clip/{clip_id}", self._clip),
            web.get("/x/{token}/", self._experimenter_page),
            web.get("/x/{token}/ws", self._experimenter_ws),
            web.static("/static", STATIC),
        ])
        self.app = app

    @property
    def base(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def participant_url(self) -> str:
        return f"{self.base}/p/{self.participant_token}/"

    @property
    def experimenter_url(self) -> str:
        return f"{self.base}/x/{self.experimenter_token}/"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as e:
            raise WearsError(f"cannot listen on {self.host}:{self.port}: {e.strerror}") from e
        self.port = self._runner.addresses[0][1]  # the port listened on (port 0: the one the system chose)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # Guards -----------------------------------------------------------------------------------

    def _check(self, request: web.Request, expected: str) -> None:
        if not secrets.compare_digest(request.match_info["token"], expected):
            raise web.HTTPNotFound()

    # Pages and clips ----------------------------------------------------------------------------

    async def _participant_page(self, request: web.Request) -> web.StreamResponse:
        self._check(request, self.participant_token)
        return web.FileResponse(STATIC / "participant.html", headers={"Cache-Control": "no-store"})

    async def _experimenter_page(self, request: web.Request) -> web.StreamResponse:
        self._check(request, self.experimenter_token)
        return web.FileResponse(STATIC / "experimenter.html", headers={"Cache-Control": "no-store"})

    async def _clip(self, request: web.Request) -> web.StreamResponse:
        self._check(request, self.participant_token)
        clip_id = request.match_info["clip_id"]
        if clip_id not in self.engine.run.clip_order:
            raise web.HTTPNotFound()
        path = self.engine.protocol.clips[clip_id].file
        if not path.is_file():
            raise web.HTTPNotFound(text=f"{path.name} is missing")
        return web.FileResponse(path)

    # Websockets -----------------------------------------------------------------------------------

    async def _socket(self, request: web.Request, screens: dict, handle, on_close=None) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=5.0)
        await ws.prepare(request)
        screens[ws] = ws.send_json
        engine = self.engine
        await engine.refresh()
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                try:
                    msg = json.loads(message.data)
                    if not isinstance(msg, dict):
                        raise ValueError("not an object")
                    reply = await handle(msg)
                except WearsError as e:
                    reply = {"type": "error", "text": str(e)}
                except (ValueError, TypeError, KeyError) as e:
                    reply = {"type": "error", "text": f"bad message: {e}"}
                if reply is not None:
                    await ws.send_json(reply)
        finally:
            screens.pop(ws, None)
            if on_close is not None:
                await on_close()
        return ws

    async def _participant_ws(self, request: web.Request) -> web.StreamResponse:
        self._check(request, self.participant_token)
        return await self._socket(request, self.engine.participants, self.engine.participant_message,
                                  self.engine.participant_left)

    async def _experimenter_ws(self, request: web.Request) -> web.StreamResponse:
        self._check(request, self.experimenter_token)
        return await self._socket(request, self.engine.experimenters, self._experimenter_message)

    async def _experimenter_message(self, msg: dict) -> dict | None:
        engine, kind = self.engine, msg.get("type")
        if kind == "preflight":
            asyncio.ensure_future(engine.preflight())  # answers through the state it broadcasts
        elif kind == "start":
            await engine.start(force=bool(msg.get("force")))
        elif kind == "pause":
            await engine.pause()
        elif kind == "resume":
            await engine.resume()
        elif kind == "abort":
            await engine.abort(str(msg.get("reason") or "aborted by the experimenter"))
        elif kind == "marker":
            await engine.marker(str(msg.get("text") or ""))
        elif kind == "note":
            await engine.note(str(msg.get("text") or ""))
        elif kind == "scan":
            await engine.scan()
            await engine.refresh(participants=False)
        elif kind == "connect":
            await engine.connect_watch(str(msg["address"]))
        else:
            return {"type": "error", "text": f"unknown command {kind!r}"}
        return None
