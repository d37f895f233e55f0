"""`wears live`: the dashboard's bookkeeping, and its rendering against virtual watches (one on
BLE with a model, one on the USB serial link without); a watch whose link is cut and that stays
out of reach a while is shown again once it is back."""

import asyncio
import io

import numpy as np
import pytest
from bleak.exc import BleakError
from rich.console import Console
from sklearn.ensemble import ExtraTreesClassifier

from watch.features import spec_for
from wears.ble.virtual import VirtualBleakClient
from wears.export import quantize_forest
from wears.live import Dashboard, Timeline, WatchState, live
from wears.protocol import HeartRate, Samples, Status
from wears.serial_link import SerialBleakClient
from wears.sim.runner import VirtualWatch
from wears.sim.scenario import synthetic

from . import RUN_TIMEOUT_S


def _samples(first, count, stream=1):
    return Samples(type=1, seq=0, tick=first * 10, stream=stream, first_index=first,
                   samples=np.zeros((count, 2), np.uint32))


def _render(states):
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(Dashboard(states))
    return console.export_text()


def test_timeline_counts_holes_and_a_resent_chunk_fills_its_part():
    t = Timeline()
    t.add(0, 10)
    t.add(30, 10)  # 10..29 missing
    t.add(50, 5)  # 40..49 missing
    assert t.lost == 30 and t.pending == 30
    t.add(15, 10)  # backfilled: 15..24
    assert t.holes == [[10, 15], [25, 30], [40, 50]] and t.pending == 20
    t.add(10, 5), t.add(25, 5), t.add(40, 10)
    assert t.pending == 0 and t.lost == 30
    t.add(0, 10)  # a duplicate changes nothing
    assert t.pending == 0 and t.next == 55


def test_rows_show_loss_then_backfill_progress():
    s = WatchState("AA:01")
    s.handle("event", Status(type=4, seq=0, tick=0, battery=9, flags=0, reserved=0, heap_free=0, flash_free=0,
                             model_id=0, overflow=0, i2c_errors=0, dropped=0, imu_lost=0, boots=1,
                             streams=7, auth_failures=0))
    s.handle("prediction", HeartRate(type=2, seq=0, tick=5000, bpm_x10=723, quality=30, beats=9, index=500))
    for first in (0, 24, 72):
        s.handle("stream", _samples(first, 24))
    text = _render([s])
    assert "AA:01" in text and "72.3" in text and " 30 %" in text and "  9 %" in text
    assert "0 pkt / 24 smp" in text and "24 smp pending" in text and "no model" in text
    s.handle("stream", _samples(48, 24))  # the watch re-sends the missing chunk
    assert "complete" in _render([s]) and s.backfill_pending == 0


def _model_blob(key):
    spec, n = spec_for(True)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 100_000, (300, n))
    y = (X[:, 0] > 50_000).astype(int)
    forest = ExtraTreesClassifier(n_estimators=3, max_depth=3, random_state=0).fit(X, y)
    return quantize_forest(forest, X, spec).to_blob(key)


@pytest.mark.slow
def test_dashboard_renders_a_row_per_watch_over_ble_and_serial(tmp_path):
    path = tmp_path / "p03.wscn"
    synthetic(13, participant="P03", rest_s=30, episode_s=50, n_episodes=1).write(path)
    key = bytes(range(32))
    console = Console(record=True, width=220, file=io.StringIO())

    async def run():
        async with VirtualWatch(path, name="WEARS-BLE1", key=key, model=_model_blob(key),
                                flash_dir=tmp_path / "a") as ble, \
                VirtualWatch(path, name="WEARS-SER1", link="serial", flash_dir=tmp_path / "b") as ser:
            return await live([(ble.address, VirtualBleakClient), (ser.serial_port, SerialBleakClient)],
                              duration_s=40, console=console, wall_timeout_s=300)

    board = asyncio.run(asyncio.wait_for(run(), RUN_TIMEOUT_S))
    ble, ser = board.watches
    assert ble.seconds >= 40 and ser.seconds >= 40
    assert ble.prediction is not None and ser.prediction is None
    assert ble.heart_rate is not None and ser.heart_rate is not None and ble.status.battery > 0
    assert ble.lost_samples == ser.lost_samples == 0 and ble.lost_packets == ser.lost_packets == 0
    text = console.export_text()
    rows = {name: next(line for line in text.splitlines()[::-1] if name in line)
            for name in ("WEARS-BLE1", "WEARS-SER1")}
    assert "p=" in rows["WEARS-BLE1"] and ("pleasant" in rows["WEARS-BLE1"])
    assert "no model" in rows["WEARS-SER1"] and "/dev/" in rows["WEARS-SER1"]
    for row in rows.values():
        assert "done" in row and "0 pkt / 0 smp" in row and "none needed" in row and "%" in row


class _CableBreaksOnce(SerialBleakClient):
    """A serial backend whose link breaks (as a pulled cable) after the 30th stream packet, once."""

    broken = 0
    seen = 0

    def _on_frame(self, op, channel, value):
        super()._on_frame(op, channel, value)
        if channel == 1 and op == 0x03:
            type(self).seen += 1
            if type(self).seen == 30 and not type(self).broken:
                type(self).broken += 1
                self._link_lost(0x08)


@pytest.mark.slow
def test_a_watch_whose_link_breaks_is_reconnected_and_its_missing_samples_shown(tmp_path):
    _CableBreaksOnce.broken = _CableBreaksOnce.seen = 0  # the same in a second run of the test
    path = tmp_path / "p05.wscn"
    synthetic(15, participant="P05", rest_s=30, episode_s=30, n_episodes=1).write(path)
    console = Console(record=True, width=220, file=io.StringIO())

    async def run():
        async with VirtualWatch(path, link="serial", speed=10, flash_dir=tmp_path / "f") as vw:
            return await live([(vw.serial_port, _CableBreaksOnce)], duration_s=20, console=console,
                              wall_timeout_s=300)

    (state,) = asyncio.run(asyncio.wait_for(run(), RUN_TIMEOUT_S)).watches
    assert _CableBreaksOnce.broken == 1 and state.reconnects == 1 and state.seconds >= 20
    assert state.lost_samples > 0 and state.backfill_pending == state.lost_samples  # nothing re-sent them yet
    row = next(line for line in console.export_text().splitlines()[::-1] if "/dev/" in line)
    assert "(1x)" in row and "smp pending" in row


class _CutThenOutOfRange(VirtualBleakClient):
    """The virtual watch's BLE backend whose link is cut with no goodbye (the transport aborted)
    after the 40th notification, once; the watch then stays out of reach for two attempts."""

    notified = 0
    cut = 0
    refused = 0
    after_cut = 0

    async def connect(self, pair: bool, **kwargs) -> None:
        cls = type(self)
        if cls.cut and cls.refused < 2:
            cls.refused += 1
            raise BleakError(f"{self.address} is out of range")
        await super().connect(pair, **kwargs)

    async def start_notify(self, characteristic, callback, **kwargs) -> None:
        cls = type(self)

        def counted(data):
            cls.notified += 1
            cls.after_cut += bool(cls.cut)
            callback(data)
            if cls.notified == 40 and not cls.cut:
                cls.cut = 1
                self._writer.transport.abort()

        await super().start_notify(characteristic, counted, **kwargs)


@pytest.mark.slow
def test_live_survives_a_cut_link_and_shows_the_watch_again(tmp_path):
    cls = _CutThenOutOfRange
    cls.notified = cls.cut = cls.refused = cls.after_cut = 0  # the same in a second run of the test
    path = tmp_path / "p06.wscn"
    synthetic(16, participant="P06", rest_s=30, episode_s=30, n_episodes=1).write(path)
    console = Console(record=True, width=220, file=io.StringIO(), force_terminal=True)  # every refresh drawn

    async def run():
        async with VirtualWatch(path, name="WEARS-CUT1", speed=5, flash_dir=tmp_path / "f") as vw:
            return await live([(vw.address, cls)], duration_s=25, console=console, wall_timeout_s=300)

    (state,) = asyncio.run(asyncio.wait_for(run(), RUN_TIMEOUT_S)).watches
    assert cls.cut == 1 and cls.refused == 2 and state.reconnects == 3  # the cut, then two refusals
    assert cls.after_cut > 40 and state.seconds >= 25 and state.heart_rate is not None
    assert state.link == "done" and not state.error
    rows = [line for line in console.export_text().splitlines() if "WEARS-CUT1" in line]
    links = [next(w for w in ("reconnecting", "connecting", "streaming", "done") if w in row) for row in rows]
    # What the experimenter saw: the watch, then it away, then the watch again until the end.
    seen = [w for i, w in enumerate(links) if i == 0 or links[i - 1] != w]
    assert seen[-3:] == ["reconnecting", "streaming", "done"] and "streaming" in seen[:-3]
    again = [row for row, w in zip(rows, links) if w == "streaming"][-1]
    assert "streaming (3x)" in again and "done (3x)" in rows[-1]
