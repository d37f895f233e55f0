"""A recording over the USB serial link: the unmodified firmware in MicroPython with its UART on a
pseudo-terminal, pyserial on the host, and the same WatchClient / record above the transport."""

import asyncio

import numpy as np
import pytest

from watch import protocol as P
from wears.blob import new_key
from wears.client import WatchClient
from wears.db import Study
from wears.errors import ModelBlobError
from wears.record import record
from wears.serial_link import SerialBleakClient
from wears.sim.runner import VirtualWatch
from wears.sim.scenario import synthetic

from . import RUN_TIMEOUT_S
from .waiting import samples_stored

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("scenario") / "p02.wscn"
    scenario = synthetic(12, participant="P02", rest_s=20, episode_s=40, n_episodes=1)
    scenario.write(path)
    return scenario, path


def test_a_session_recorded_over_serial_has_every_sample_once_despite_line_noise(scenario_file, tmp_path):
    scenario, path = scenario_file
    study = Study.open(tmp_path / "study.db")
    stderr = []

    async def noise(client):
        # Line noise and a torn frame from the host side: the watch must skip them and carry on.
        port = client._client._backend._port
        port.write(b"\x01\x02\x03junk\x00\x05\x82\x03\x01\x81\x00" + bytes(range(1, 200)) + b"\x00")
        assert (await client.status()).battery > 0

    async def run():
        async with VirtualWatch(path, flash_dir=tmp_path / "flash", link="serial") as vw:
            assert vw.serial_port and vw.entry["link"] == "serial"
            got = await record(study, vw.serial_port, participant="P02", until_s=scenario.duration_s - 5,
                               backend=SerialBleakClient, prepare=noise)
            stderr.append(vw.stderr)
            return got

    sid, stats = asyncio.run(asyncio.wait_for(run(), RUN_TIMEOUT_S))
    session = study.session(sid)
    assert session["status"] == "complete" and session["address"].startswith("/dev/")
    assert study.conn.execute("SELECT source FROM sessions WHERE id=?", (sid,)).fetchone()[0] == "serial"
    ppg = study.stream(sid, P.PPG)
    assert ppg.gaps == 0 and stats.lost_samples == 0 and stats.bad_packets == 0 and stats.duplicates == 0
    assert ppg.first_index + len(ppg.samples) >= (scenario.duration_s - 5) * ppg.rate_hz
    first = ppg.first_index
    np.testing.assert_array_equal(ppg.samples[:, 0], scenario.ppg[first:first + len(ppg.samples), 0])
    acc, gyro = study.stream(sid, P.ACC), study.stream(sid, P.GYRO)
    assert acc.gaps == 0 and gyro.gaps == 0 and len(acc.samples) == len(gyro.samples) > 0
    assert stats.heart_rates > 0
    assert "Traceback" not in stderr[0]


def test_model_upload_over_serial_is_checked_like_over_ble(scenario_file, tmp_path):
    _, path = scenario_file
    key = new_key()

    async def run():
        async with VirtualWatch(path, flash_dir=tmp_path / "flash", key=key, link="serial") as vw:
            async with WatchClient(vw.serial_port, backend=SerialBleakClient) as watch:
                assert (await watch._client.read_gatt_char("2a26")) == b"0.1.0"
                with pytest.raises(ModelBlobError) as refused:
                    await watch.upload_model(b"WMDL" + bytes(600))
                assert (await watch.status()).model_id == 0
                return refused.value.reason

    reason = asyncio.run(asyncio.wait_for(run(), RUN_TIMEOUT_S))
    assert reason in (P.E_BAD_MAGIC, P.E_BAD_VERSION, P.E_TRUNCATED, P.E_BAD_CRC, P.E_BAD_SIGNATURE)


def test_wears_record_port_records_over_serial_and_publishes_on_lsl(scenario_file, tmp_path, capsys):
    import json

    from wears.cli import main

    _, path = scenario_file
    lsl = ["--lsl"] if _has_pylsl() else []
    with VirtualWatch(path, flash_dir=tmp_path / "flash", link="serial") as vw:
        code = main(["record", "--port", vw.serial_port, "--db", str(tmp_path / "cli.db"), "--participant", "P02",
                     "--duration", "20", *lsl])
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out.splitlines()[-1])
    assert result["lost_samples"] == 0 and result["bad_packets"] == 0 and result["samples"]["1"] >= 2000
    assert main(["record", "AA:BB", "--port", "/dev/null", "--db", str(tmp_path / "x.db"), "--participant", "P",
                 "--duration", "1"]) == 1
    assert "not both" in capsys.readouterr().err and not (tmp_path / "x.db").exists()


def _has_pylsl():
    try:
        import pylsl  # noqa: F401
    except (ImportError, OSError, RuntimeError):
        return False
    return True


def test_a_host_that_vanishes_without_goodbye_is_replaced_by_the_next(scenario_file, tmp_path):
    scenario, path = scenario_file
    study = Study.open(tmp_path / "study.db")

    async def run():
        async with VirtualWatch(path, flash_dir=tmp_path / "flash", link="serial", speed=20) as vw:
            first = WatchClient(vw.serial_port, backend=SerialBleakClient)
            await first.connect()
            await first.start()
            await asyncio.sleep(0.5)
            first._client._backend._close_port()  # killed: no DISCONNECT, the watch keeps sending
            await asyncio.sleep(0.5)  # what it sends meanwhile waits in the port for the next host
            return await record(study, vw.serial_port, participant="P02", duration_s=10, backend=SerialBleakClient)

    sid, stats = asyncio.run(asyncio.wait_for(run(), RUN_TIMEOUT_S))
    assert study.session(sid)["status"] == "complete"
    assert stats.lost_samples == 0 and stats.bad_packets == 0 and stats.samples[P.PPG] >= 1000


def test_a_watch_that_dies_on_the_serial_link_ends_the_recording_with_what_arrived(scenario_file, tmp_path):
    from wears.errors import WatchDisconnected

    _, path = scenario_file
    study = Study.open(tmp_path / "study.db")

    async def run():
        async with VirtualWatch(path, flash_dir=tmp_path / "flash", link="serial", speed=20) as vw:
            async def kill_later():
                await samples_stored(study, 500)
                vw.kill()  # the port breaks: no goodbye
            killer = asyncio.ensure_future(kill_later())
            with pytest.raises(WatchDisconnected, match="kept in"):
                await record(study, vw.serial_port, participant="P02", duration_s=1000, backend=SerialBleakClient,
                             reconnect_s=3)
            await killer

    asyncio.run(asyncio.wait_for(run(), RUN_TIMEOUT_S))
    session = study.sessions()[0]
    assert session["status"] == "interrupted" and study.sample_count(session["id"], P.PPG) >= 500
