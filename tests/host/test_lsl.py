"""The Lab Streaming Layer outlet, read back by an inlet in the same process."""

import time

import numpy as np
import pytest
from numpy.lib.recfunctions import unstructured_to_structured

from watch import protocol as P
from wears.lsl import ArrivalClock, LslOutlet
from wears.protocol import Event, Prediction, Samples, StreamInfo

from . import RUN_TIMEOUT_S

pylsl = pytest.importorskip("pylsl")


def test_arrival_clock_takes_the_fastest_packet_of_the_last_window():
    clock = ArrivalClock(window_s=10)
    clock.see(1000, 101.050)  # waited 50 ms in a queue
    clock.see(2000, 102.005)  # the fastest
    clock.see(3000, 103.020)
    assert clock.offset == pytest.approx(100.005)
    clock.see(15000, 115.010)  # the fast one has left the window
    assert clock.offset == pytest.approx(100.010)
    assert clock.host_time(20000) == pytest.approx(120.010)


def _inlet(source_id):
    found = pylsl.resolve_byprop("source_id", source_id, timeout=10)
    assert found, f"no LSL stream {source_id}"
    inlet = pylsl.StreamInlet(found[0], max_chunklen=64)
    inlet.open_stream(timeout=10)
    return inlet


def _pull(inlet, n, timeout=10.0):
    values, stamps = [], []
    deadline = time.monotonic() + timeout
    while len(values) < n and time.monotonic() < deadline:
        chunk, ts = inlet.pull_chunk(timeout=0.5)
        values += chunk
        stamps += ts
    return values, stamps


def test_samples_and_markers_reach_an_inlet_with_the_watch_timeline():
    source = f"test-{time.monotonic_ns()}"
    arrival = [500.0]  # the host's clock when the next packet arrives
    outlet = LslOutlet("WEARS-T", source, now=lambda: arrival[0])
    outlet.handle("stream", StreamInfo(type=8, seq=0, tick=10, stream=P.PPG, channels=2, rate_mhz=100000,
                                       unit=1.0, tick0=10))
    outlet.handle("stream", StreamInfo(type=8, seq=1, tick=10, stream=P.ACC, channels=3, rate_mhz=50000,
                                       unit=0.000122, tick0=20))
    ppg_in, acc_in, markers_in = (_inlet(f"wears-{source}-{s}") for s in ("ppg", "acc", "markers"))
    info = ppg_in.info()
    assert info.type() == "PPG" and info.channel_count() == 2 and info.nominal_srate() == 100
    assert info.desc().child("channels").child("channel").child_value("unit") == "counts"
    ppg = np.stack([np.arange(1000, 1030), np.arange(2000, 2030)], axis=1).astype(np.uint32)
    records = unstructured_to_structured(ppg, np.dtype([("ir", "<u4"), ("red", "<u4")]))  # as the decoder gives them
    outlet.handle("stream", Samples(type=1, seq=2, tick=400, stream=P.PPG, first_index=0, samples=records[:20]))
    arrival[0] += 0.130  # 100 ms of the watch's clock later, and 30 ms late: the offset stays
    outlet.handle("stream", Samples(type=1, seq=3, tick=500, stream=P.PPG, first_index=20, samples=records[20:]))
    outlet.handle("stream", Samples(type=1, seq=4, tick=500, stream=P.ACC, first_index=0,
                                    samples=np.array([[0, 0, 8192], [10, -10, 8192]], np.int16)))
    outlet.handle("event", Event(type=5, seq=0, tick=450, code=P.EV_MARK, arg=7))
    outlet.handle("prediction", Prediction(type=3, seq=0, tick=460, index=30, model_id=1, flags=0, label=1,
                                           proba=(64, 191)))
    values, stamps = _pull(ppg_in, 30)
    assert values == ppg.tolist()
    np.testing.assert_allclose(np.diff(stamps), 0.01, atol=1e-6)  # the watch's sample period, not arrival
    acc, acc_stamps = _pull(acc_in, 2)
    np.testing.assert_allclose(acc, [[0, 0, 8192 * 0.000122], [0.00122, -0.00122, 8192 * 0.000122]], rtol=1e-5)
    # Both streams on one timeline: ACC index 0 is 10 ms after PPG index 0 on the watch's clock.
    assert acc_stamps[0] - stamps[0] == pytest.approx(0.010, abs=1e-6)
    markers, marker_stamps = _pull(markers_in, 2)
    assert markers == [["event mark 7"], ["prediction pleasant 0.75"]]
    assert marker_stamps[0] - stamps[0] == pytest.approx(0.440, abs=1e-6)
    assert outlet.samples_pushed == 32 and outlet.markers_pushed == 2


@pytest.mark.slow
def test_live_publishes_a_virtual_watch_on_lsl(tmp_path):
    import asyncio
    import contextlib
    import io

    from rich.console import Console

    from wears.live import live
    from wears.serial_link import SerialBleakClient
    from wears.sim.runner import VirtualWatch
    from wears.sim.scenario import synthetic

    scenario = synthetic(14, participant="P04", rest_s=30, episode_s=30, n_episodes=1)
    scenario.write(tmp_path / "p04.wscn")

    async def run():
        async with VirtualWatch(tmp_path / "p04.wscn", link="serial", speed=1, flash_dir=tmp_path / "f") as vw:
            # An inlet gets what is pushed after it connects, and finding the outlet takes a while on a
            # loaded machine: the watch streams until the inlet has its 3 s.
            shown = asyncio.ensure_future(live([(vw.serial_port, SerialBleakClient)], duration_s=50, lsl=True,
                                               console=Console(file=io.StringIO()), wall_timeout_s=120))
            inlet = await asyncio.to_thread(_inlet, f"wears-{vw.serial_port}-ppg")
            values, stamps = await asyncio.to_thread(_pull, inlet, 300, 45.0)
            shown.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await shown
            return values, stamps

    values, stamps = asyncio.run(asyncio.wait_for(run(), RUN_TIMEOUT_S))
    assert len(values) >= 300
    ir = np.array(values)[:, 0]
    start = int(np.flatnonzero(scenario.ppg[:, 0] == ir[0])[0])
    np.testing.assert_array_equal(ir, scenario.ppg[start:start + len(ir), 0])  # the watch's samples, in order
    # Stamped from the watch's clock: the sample period, with a step only where a faster packet
    # improved the clock offset (by how late the earlier packets came: small, unless the machine
    # is loaded; the bound only says the stamps are not arrival times).
    steps = np.diff(stamps)
    assert np.median(steps) == pytest.approx(0.01, abs=1e-6) and np.all(np.abs(steps - 0.01) < 0.5)
