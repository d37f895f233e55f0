"""How far recorded clip onsets and offsets are from the clip's first and last frames, on the samples' timeline.

Runs a session in Debian's headless chromium against the virtual watch at real-time speed
(the unmodified firmware in MicroPython, BLE through bleak), with generated clips, and
compares each recorded onset (`trials.onset_s`: the first frame's requestVideoFrameCallback
`presentationTime`, carried to the host clock by the page's websocket clock sync, then onto
the watch's clock by the fit of the session's jittered pings, then onto the PPG timeline by the
stream's tick0) with a reference onset for the same frame obtained independently; and the same
for each recorded offset (`trials.offset_s`: the end of the last presented frame, its
`presentationTime` plus one frame's media duration):

- page -> host: Chromium's own monotonic clock. On Linux `performance.now()` counts from the
  navigation's TimeTicks, which CDP `Performance.getMetrics` gives as `NavigationStart`, on
  CLOCK_MONOTONIC like the host's `time.monotonic()`; so host = NavigationStart + t / 1000,
  with no websocket in between.
- host -> watch: a burst of pings the benchmark sends itself right after each onset and each
  offset (not
  stored, so the session's fit never sees them); the one with the shortest round trip gives
  the watch's tick, extrapolated to the onset at the nominal rate. Its uncertainty (half that
  round trip) is reported as `reference_bound_ms` (median over the clips).

error = recorded onset - reference onset, in ms, for every clip; `median_onset_error_ms` and
`p95_onset_error_ms` are over its absolute value (`mean_signed_error_ms` keeps the sign);
`median_offset_error_ms` and `p95_offset_error_ms` the same for offsets. It measures the clock
mapping of the production path and its choice of frame (a click or the `play` event would
be tens of ms off); it cannot measure how late a physical display shows a frame after the
browser presented it (that needs a photodiode on a real screen).
`first_frame_media_ms_max` (the first presented frame's media time) and `last_frame_gap_ms_max`
(the clip's duration minus the end of the last presented frame) show that no clip lost its first
or last frame: each should stay under one frame (33 ms at 30 fps).
`lost_events`: events a completed run must have (start, baseline and wash-out onsets and
offsets, each clip's onset, offset and rating, complete) that are missing from the database,
plus stored events whose MARK the watch never echoed.
Target: p95 under 20 ms. Prints one JSON object as its last line.

    .venv/bin/python tools/bench/onset_latency.py [--clips 16] [--clip-s 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.host.session_driver import answer_rating, browser, session_server, until  # noqa: E402
from wears.db import Study  # noqa: E402
from wears.session.clips import write_trial_study  # noqa: E402
from wears.session.timeline import SessionTimeline  # noqa: E402
from wears.sim.runner import VirtualWatch  # noqa: E402
from wears.sim.scenario import synthetic  # noqa: E402

_BURST = 16


async def _reference_pings(watch) -> tuple[float, float, int]:
    """The burst ping with the shortest round trip: (host sent, host received, tick).

    Each waits a random part of the watch's 100 ms loop first, so that some meet the watch
    just before its step and come back fast."""
    best = None
    for _ in range(_BURST):
        await asyncio.sleep(random.uniform(0, 0.1))
        sent, received, tick = await watch.ping()
        if best is None or received - sent < best[1] - best[0]:
            best = (sent, received, tick)
    return best


async def run(n_clips: int, clip_s: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        protocol = write_trial_study(work, per_language=(n_clips + 1) // 2, seconds=clip_s, baseline_s=2,
                                     washout_s=0.3)
        seconds = 60 + n_clips * (clip_s + 3)
        synthetic(2, rest_s=int(seconds), episode_s=60, n_episodes=1).write(work / "p.wscn")
        study = Study.open(work / "study.db")
        references: dict[int, dict] = {}
        async with VirtualWatch(work / "p.wscn", flash_dir=work / "flash", speed=1) as vw, browser() as b:
            async with session_server(study, protocol, "B01", "hi", vw.address) as server:
                engine = server.engine
                page = await b.new_page()
                await page.goto(server.participant_url)
                cdp = await page.context.new_cdp_session(page)
                await cdp.send("Performance.enable")
                metrics = {m["name"]: m["value"] for m in (await cdp.send("Performance.getMetrics"))["metrics"]}
                navigation_start = metrics["NavigationStart"]
                await until(lambda: engine.participants, 10, "the participant screen")
                await engine.start(force=True)  # the pre-flight's heart-rate windows take 30 s at real time
                while engine.status == "running":
                    step = engine.current
                    if step.kind == "clip":
                        await until(lambda: engine.trial is not None or engine.step != step.index, 30, "an onset")
                        trial = engine.trial
                        if trial is not None and trial not in references:
                            references[trial] = {"onset": await _reference_pings(engine.watch)}
                        await until(lambda: engine.step != step.index, 30, "the clip's end")
                        if trial in references:  # the rating waits while the offset's burst runs
                            references[trial]["offset"] = await _reference_pings(engine.watch)
                    elif step.kind in ("rating", "attention"):
                        await answer_rating(page, step.index, (7, 5)[:1 if step.kind == "attention" else 2], "keyboard")
                        await until(lambda: engine.step != step.index, 20, "the rating")
                    else:
                        await asyncio.sleep(0.01)
                run_id = engine.run.id
                session_id = engine.store.sessions()[-1]
        timeline = SessionTimeline(study, session_id)
        tick0 = timeline.tick0()

        def reference_s(page_ms: float, ping: tuple[float, float, int]) -> float:
            """The PPG-timeline second of a page instant, through CDP's clock and a burst ping."""
            sent, received, tick = ping
            host = navigation_start + page_ms / 1000
            return (tick + (host - (sent + received) / 2) * 1000.0 - tick0) / 1000

        errors, offset_errors, page_host, bounds, media, last_gaps = [], [], [], [], [], []
        for trial, onset_s, offset_s, onset_host, onset_detail, offset_detail in study.conn.execute(
                "SELECT t.id, t.onset_s, t.offset_s, t.onset_host, a.text, b.text FROM trials t "
                "JOIN session_events a ON a.trial_id = t.id AND a.kind = 'clip_onset' "
                "JOIN session_events b ON b.trial_id = t.id AND b.kind = 'clip_offset' "
                "WHERE t.run_id=? AND t.kind='clip' AND t.status='done'", (run_id,)):
            ref = references.get(trial, {})
            if "onset" not in ref or "offset" not in ref:
                continue
            on, off = json.loads(onset_detail), json.loads(offset_detail)
            errors.append((onset_s - reference_s(on["page_presentation_ms"], ref["onset"])) * 1000)
            offset_errors.append((offset_s - reference_s(off["page_ms"], ref["offset"])) * 1000)
            page_host.append((onset_host - (navigation_start + on["page_presentation_ms"] / 1000)) * 1000)
            for sent, received, _ in (ref["onset"], ref["offset"]):
                bounds.append((received - sent) * 500)
            media.append(on["media_s"] * 1000)
            last_gaps.append((off["duration_s"] - off["last_media_s"] - off["frame_s"]) * 1000)
        expected = {"start": 1, "baseline_onset": 1, "baseline_offset": 1, "clip_onset": n_clips,
                    "clip_offset": n_clips, "rating": n_clips, "washout_onset": n_clips - 1,
                    "washout_offset": n_clips - 1, "complete": 1}
        stored = dict(study.conn.execute("SELECT kind, COUNT(*) FROM session_events WHERE run_id=? GROUP BY kind",
                                         (run_id,)).fetchall())
        missing = sum(max(0, n - stored.get(kind, 0)) for kind, n in expected.items())
        not_echoed = study.conn.execute("SELECT COUNT(*) FROM session_events WHERE run_id=? AND echo_tick IS NULL",
                                        (run_id,)).fetchone()[0]
        abs_err, abs_offset_err = np.abs(errors), np.abs(offset_errors)
        return {
            "benchmark": "onset_latency",
            "clips": len(errors),
            "median_onset_error_ms": round(float(np.median(abs_err)), 2),
            "p95_onset_error_ms": round(float(np.percentile(abs_err, 95)), 2),
            "max_onset_error_ms": round(float(np.max(abs_err)), 2),
            "mean_signed_error_ms": round(float(np.mean(errors)), 2),
            "median_offset_error_ms": round(float(np.median(abs_offset_err)), 2),
            "p95_offset_error_ms": round(float(np.percentile(abs_offset_err, 95)), 2),
            "max_offset_error_ms": round(float(np.max(abs_offset_err)), 2),
            "page_to_host_median_ms": round(float(np.median(np.abs(page_host))), 2),
            "reference_bound_ms": round(statistics.median(bounds), 2),
            "first_frame_media_ms_max": round(max(media), 1),
            "last_frame_gap_ms_max": round(max(last_gaps), 1),
            "lost_events": int(missing + not_echoed),
            "target_p95_ms": 20,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--clip-s", type=float, default=1.0)
    args = parser.parse_args()
    started = time.perf_counter()
    result = asyncio.run(run(args.clips, args.clip_s))
    result["real_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
