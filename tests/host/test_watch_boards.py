"""The firmware on each board profile, end to end on the virtual watch: sensors present or
missing, set rates, authentication, safe mode."""

from __future__ import annotations

import asyncio

import pytest
from bleak import BleakClient

from watch import protocol as P
from wears.ble.virtual import VirtualBleakClient
from wears.client import WatchClient
from wears.errors import CommandRefused
from wears.protocol import Event, HeartRate, Samples, StreamInfo
from wears.sim.runner import VirtualWatch
from wears.sim.scenario import synthetic

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scenario_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("boards") / "s.wscn"
    synthetic(5, rest_s=50, episode_s=20, n_episodes=1).write(path)  # 70 s
    return path


async def _session(path, *, board="esp32s3-wrist", env=None, flash=None, act=None, until_end=True, speed=15, **kw):
    """Connect, start every stream, let `act(watch)` run, collect packets to the power-off."""
    packets: list = []
    async with VirtualWatch(path, board=board, env=env, flash_dir=flash, speed=speed, **kw) as vw:
        async with WatchClient(vw.address, backend=VirtualBleakClient,
                               on_packet=lambda ch, p: packets.append(p)) as watch:
            status = await watch.status()
            await watch.start(0xFF)
            if act:
                await act(watch)
            if until_end:
                await watch.disconnected.wait()
    return packets, status


def _samples(packets, stream):
    got = [p for p in packets if isinstance(p, Samples) and p.stream == stream]
    index = [p.first_index + i for p in got for i in range(p.count)]
    return got, index


@pytest.mark.parametrize("board", ["pinetime", "xiao-nrf52840-sense"])
def test_board_streams_every_sample_it_has_and_only_those(scenario_path, board):
    packets, status = asyncio.run(asyncio.wait_for(_session(scenario_path, board=board), 240))
    gyro_expected = board != "pinetime"
    assert status.streams == (0b111 if gyro_expected else 0b011)
    for stream in (P.PPG, P.ACC):
        _, index = _samples(packets, stream)
        assert len(index) > 500 and index == list(range(index[0], index[0] + len(index)))  # no gap
    assert bool(_samples(packets, P.GYRO)[1]) == gyro_expected
    rates = {p.stream: p.rate_hz for p in packets if isinstance(p, StreamInfo)}
    assert rates[P.PPG] == (25 if board == "pinetime" else 100)
    assert sum(isinstance(p, HeartRate) for p in packets) >= 3


def test_missing_imu_keeps_ppg_and_heart_rate_and_says_so(scenario_path):
    packets, status = asyncio.run(asyncio.wait_for(
        _session(scenario_path, env={"WEARS_SIM_MISSING": "imu"}), 240))
    assert status.streams == 0b001
    missing = {p.arg for p in packets if isinstance(p, Event) and p.code == P.EV_SENSOR_MISSING}
    assert missing == {P.ACC, P.GYRO}  # sent at boot, kept until a host connects
    assert len(_samples(packets, P.PPG)[1]) > 1000 and not _samples(packets, P.ACC)[1]
    hr = [p for p in packets if isinstance(p, HeartRate)]
    assert len(hr) >= 3 and all(40 < p.bpm < 140 for p in hr[1:])  # the features run on PPG alone


def test_set_rate_changes_the_stream_and_refuses_rates_the_part_cannot_run(scenario_path):
    async def act(watch):
        with pytest.raises(CommandRefused) as bad:
            await watch.set_rate(P.PPG, 33)
        assert bad.value.reason == P.E_BAD_RATE
        await watch.set_rate(P.PPG, 50)
        await watch.set_rate(P.ACC, 104)

    packets, _ = asyncio.run(asyncio.wait_for(_session(scenario_path, act=act), 240))
    infos = [(p.stream, p.rate_hz) for p in packets if isinstance(p, StreamInfo)]
    assert (P.PPG, 50) in infos and (P.ACC, 104) in infos and (P.GYRO, 104) in infos
    _, index = _samples(packets, P.PPG)
    assert index == list(range(index[0], index[0] + len(index)))  # indices go on across the change


def test_control_needs_the_watch_key_but_heart_rate_stays_open(scenario_path):
    async def run():
        async with VirtualWatch(scenario_path, speed=4) as vw:
            with pytest.raises(CommandRefused) as wrong:
                async with WatchClient(vw.address, backend=VirtualBleakClient, key=bytes(32)):
                    pass
            assert wrong.value.reason == P.E_AUTH_FAILED
            async with WatchClient(vw.address, backend=VirtualBleakClient, key=b"") as anon:
                assert not anon.authenticated
                await anon.ping()  # open: clock sync needs no key
                status = await anon.status()
                # the client tries a refused proof three times (a lost notification looks the same)
                assert not status.flags & P.STATUS_AUTHENTICATED and status.auth_failures == 3
                for call in (anon.start(), anon.mark(1), anon.set_rate(P.PPG, 50)):
                    with pytest.raises(CommandRefused) as refused:
                        await call
                    assert refused.value.reason == P.E_NOT_AUTHENTICATED
            beats = []
            async with BleakClient(vw.address, backend=VirtualBleakClient) as plain:
                await plain.start_notify("2a37", lambda _c, data: beats.append(bytes(data)))
                while len(beats) < 1:
                    await asyncio.sleep(0.05)
            async with WatchClient(vw.address, backend=VirtualBleakClient) as owner:
                assert owner.authenticated  # the virtual watch's key, found by itself
                assert await owner.start(0xFF) == 0b111
                assert (await owner.status()).flags & P.STATUS_AUTHENTICATED

    asyncio.run(asyncio.wait_for(run(), 240))


def test_repeated_crashes_boot_into_safe_mode(scenario_path, tmp_path):
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "boots.txt").write_text("3")  # three boots that never ran stable

    async def act(watch):
        with pytest.raises(CommandRefused) as refused:
            await watch.set_rate(P.PPG, 50)
        assert refused.value.reason == P.E_SAFE_MODE

    packets, status = asyncio.run(asyncio.wait_for(
        _session(scenario_path, flash=flash, act=act, until_end=False, speed=20), 120))
    assert status.flags & P.STATUS_SAFE_MODE and status.boots == 4 and status.streams == 0
    assert not _samples(packets, P.PPG)[1]


def test_i2c_errors_are_retried_counted_and_the_watch_keeps_streaming(scenario_path):
    seen = []

    async def act(watch):
        await asyncio.sleep(2)  # 30 virtual seconds at speed 15
        seen.append(await watch.status())

    packets, _ = asyncio.run(asyncio.wait_for(
        _session(scenario_path, env={"WEARS_SIM_I2C_ERROR_RATE": "0.03"}, act=act), 240))
    (status,) = seen
    assert status.i2c_errors > 10
    before = packets[:packets.index(status)]  # what the watch had sent when it counted
    for stream in (P.PPG, P.ACC, P.GYRO):
        _, index = _samples(before, stream)
        # every gap in the indices is one the drivers counted (a re-initialised part loses its FIFO)
        gaps = sum(b - a - 1 for a, b in zip(index, index[1:]) if b != a + 1)
        counted = status.overflow if stream == P.PPG else status.imu_lost
        assert len(index) > 500 and gaps <= counted, (stream, gaps, counted)
        assert len(_samples(packets, stream)[1]) > 1000  # and it streamed on to the end
    assert sum(isinstance(p, HeartRate) for p in packets) >= 3
