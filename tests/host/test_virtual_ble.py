"""The radio layer end to end: watch.radio on the `bluetooth` shim in MicroPython, reached by
bleak's own BleakScanner / BleakClient through the virtual backends; and the radio's pure
parts (Heart Rate Measurement encoding, advertising payload, write queue, pacing) in CPython."""

from __future__ import annotations

import asyncio
import re
import struct
import subprocess
import time
from pathlib import Path

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError, BleakGATTProtocolErrorCode
from bleak.uuids import normalize_uuid_16

from watch import protocol as P
from watch import radio as R
from watch import radio_gatt as G
from wears.ble import backends
from wears.ble.virtual import VirtualBleakClient, VirtualBleakScanner, parse_advertising, read_registry
from wears.errors import WearsError
from wears.sim.runner import VirtualWatch

ECHO = Path(__file__).resolve().parent / "vw_echo.py"
HR_MEASUREMENT = normalize_uuid_16(P.HR_MEASUREMENT_UUID)


def run(coro, timeout: float = 30.0):
    async def bounded():
        async with asyncio.timeout(timeout):
            return await coro
    return asyncio.run(bounded())


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("registry")


def echo_watch(registry: Path, seconds: int = 600, speed: float = 5.0, **env: str) -> VirtualWatch:
    return VirtualWatch(None, main=ECHO, speed=speed, registry=registry,
                        env={"VW_ECHO_SECONDS": str(seconds), **env})


@pytest.fixture(scope="module")
def watch(registry):
    with echo_watch(registry) as vw:
        yield vw


def client(address, registry: Path, **kwargs) -> BleakClient:
    return BleakClient(address, backend=VirtualBleakClient, virtual={"registry": str(registry)}, **kwargs)


# Scanning -----------------------------------------------------------------------------------

def test_scan_finds_the_watch_by_service_uuid_and_not_by_another(watch, registry):
    async def scan(uuids):
        return await BleakScanner.discover(0.3, service_uuids=uuids, return_adv=True, backend=VirtualBleakScanner,
                                           virtual={"registry": str(registry)})

    found = run(scan([P.SERVICE_UUID]))
    assert watch.address in found
    device, adv = found[watch.address]
    assert adv.local_name == device.name == "WEARS-VW01"
    assert P.SERVICE_UUID in adv.service_uuids and normalize_uuid_16(P.HR_SERVICE_UUID) in adv.service_uuids
    assert adv.rssi == -55
    assert watch.address not in run(scan(["0000feed-0000-1000-8000-00805f9b34fb"]))
    assert watch.address in run(scan(["180d"]))  # 16-bit filters are normalised like bleak's own UUIDs


def test_passive_scan_sees_the_uuids_but_not_the_name_from_the_scan_response(watch, registry):
    async def scan():
        async with BleakScanner(scanning_mode="passive", backend=VirtualBleakScanner,
                                virtual={"registry": str(registry)}) as scanner:
            await asyncio.sleep(0.15)
        return scanner.discovered_devices_and_advertisement_data

    _, adv = run(scan())[watch.address]
    assert adv.local_name is None and P.SERVICE_UUID in adv.service_uuids


def test_registry_entry_carries_name_port_advertised_uuids_and_rssi(watch, registry):
    entry = next(e for e in read_registry(registry) if e["address"] == watch.address)
    assert entry["name"] == "WEARS-VW01" and entry["port"] > 0 and entry["rssi"] < 0
    assert entry["pid"] == watch.pid
    assert {"574500017a3c4b8e9d2f3e1c0a5b6d70", "180d"} <= set(entry["services"])


def test_backends_helper_gives_virtual_classes_or_none_for_real_ble():
    assert backends(virtual=True) == (VirtualBleakClient, VirtualBleakScanner)
    assert backends(virtual=False) == (None, None)


# GATT ---------------------------------------------------------------------------------------

def test_services_hold_heart_rate_battery_device_info_and_the_wears_service(watch, registry):
    async def go():
        async with client(watch.address, registry) as c:
            return c.services

    services = run(go())
    hr = services.get_service(normalize_uuid_16(P.HR_SERVICE_UUID))
    assert hr is not None and hr.get_characteristic(HR_MEASUREMENT).properties == ["notify"]
    assert services.get_service(normalize_uuid_16(P.BATTERY_SERVICE_UUID)) is not None
    wears = services.get_service(P.SERVICE_UUID)
    props = {c.uuid: sorted(c.properties) for c in wears.characteristics}
    assert props == {P.STREAM_UUID: ["notify"], P.PREDICTION_UUID: ["notify", "read"],
                     P.CONTROL_UUID: ["notify", "write"], P.EVENT_UUID: ["notify"], P.UPLOAD_UUID: ["write"]}
    stream = wears.get_characteristic(P.STREAM_UUID)
    assert stream.get_descriptor(normalize_uuid_16(0x2902)) is not None  # its CCCD


def test_device_information_and_battery_are_readable(watch, registry):
    async def go():
        async with client(watch.address, registry) as c:
            return [await c.read_gatt_char(normalize_uuid_16(u)) for u in
                    (P.MODEL_NUMBER_UUID, P.FIRMWARE_REVISION_UUID, P.BATTERY_LEVEL_UUID)]

    assert run(go()) == [b"vw-echo", b"0.0.1", bytes([87])]


def test_reading_a_characteristic_without_read_gives_the_att_error(watch, registry):
    async def go():
        async with client(watch.address, registry) as c:
            await c.read_gatt_char(P.STREAM_UUID)

    with pytest.raises(BleakGATTProtocolError) as info:
        run(go())
    assert info.value.code == BleakGATTProtocolErrorCode.READ_NOT_PERMITTED


def test_stream_notifications_arrive_in_order_without_gaps(watch, registry):
    async def go():
        got: list[int] = []
        enough = asyncio.Event()

        def on_stream(char, data: bytearray) -> None:
            assert char.uuid == P.STREAM_UUID and isinstance(data, bytearray)
            got.append(struct.unpack_from("<I", data)[0])
            if len(got) >= 15:
                enough.set()

        async with client(watch.address, registry) as c:
            await c.start_notify(P.STREAM_UUID, on_stream)
            await enough.wait()
            await c.stop_notify(P.STREAM_UUID)
            stopped_at = len(got)
            await asyncio.sleep(0.15)  # 0.75 virtual seconds: 7 packets if still subscribed
            return got, stopped_at

    got, stopped_at = run(go())
    assert got == list(range(got[0], got[0] + len(got)))
    assert len(got) <= stopped_at + 1


def test_write_with_response_round_trips_through_the_control_handler(watch, registry):
    async def go():
        replies: asyncio.Queue[bytes] = asyncio.Queue()
        async with client(watch.address, registry) as c:
            await c.start_notify(P.CONTROL_UUID, lambda _c, d: replies.put_nowait(bytes(d)))
            await c.write_gatt_char(P.CONTROL_UUID, b"ping-123", response=True)
            first = await replies.get()
            await c.write_gatt_char(P.UPLOAD_UUID, bytes(range(200)), response=True)
            second = await replies.get()
            return first, second

    first, second = run(go())
    assert first == bytes([R.CONTROL]) + b"ping-123"
    assert second == bytes([R.UPLOAD]) + bytes(range(200))  # 200 bytes: the buffer is sized for the MTU


def test_write_without_response_to_a_write_only_characteristic_is_dropped(watch, registry):
    async def go():
        replies: list[bytes] = []
        async with client(watch.address, registry) as c:
            await c.start_notify(P.CONTROL_UUID, lambda _c, d: replies.append(bytes(d)))
            await c.write_gatt_char(P.CONTROL_UUID, b"lost", response=False)
            await c.write_gatt_char(P.CONTROL_UUID, b"kept", response=True)
            await asyncio.sleep(0.1)
        return replies

    assert run(go()) == [bytes([R.CONTROL]) + b"kept"]


def test_mtu_is_negotiated_to_the_lower_of_both_sides(watch, registry):
    async def go(mtu):
        async with BleakClient(watch.address, backend=VirtualBleakClient,
                               virtual={"registry": str(registry), "mtu": mtu}) as c:
            stream = c.services.get_characteristic(P.CONTROL_UUID)
            return c.mtu_size, stream.max_write_without_response_size

    assert run(go(517)) == (247, 244)  # the watch asks for 247
    assert run(go(185)) == (185, 182)  # a macOS-like central asks for less


def test_heart_rate_measurement_notifications_follow_the_spec(watch, registry):
    async def go():
        got: asyncio.Queue[bytes] = asyncio.Queue()
        async with client(watch.address, registry) as c:
            await c.start_notify(HR_MEASUREMENT, lambda _c, d: got.put_nowait(bytes(d)))
            return await got.get()

    # flags: contact supported + detected (0x06), RR present (0x10); 72 bpm; RR 819, 840 / 1024 s
    assert run(go()) == bytes([0x16, 72]) + struct.pack("<HH", 819, 840)


def test_disconnect_and_reconnect_work_repeatedly(watch, registry):
    async def go():
        for _ in range(4):
            c = client(watch.address, registry)
            await c.connect()
            assert c.is_connected
            assert await c.read_gatt_char(normalize_uuid_16(P.MODEL_NUMBER_UUID)) == b"vw-echo"
            await c.disconnect()
            assert not c.is_connected
        # Re-advertising after each disconnection makes it discoverable again.
        found = await BleakScanner.find_device_by_address(watch.address, 2.0, backend=VirtualBleakScanner,
                                                          virtual={"registry": str(registry)})
        return found

    assert run(go()) is not None


def test_a_host_that_vanishes_mid_connection_lets_the_next_one_connect_at_once(watch, registry):
    from wears.ble import virtual as V

    async def go():
        reader, writer = await asyncio.open_connection("127.0.0.1", watch.entry["port"])
        assert (await V._read_frame(reader))[0] == V.HELLO
        writer.write(V._frame(V.CONNECT, 247, bytes(6)))
        assert (await V._read_frame(reader))[:2] == (V.CONNECTED, 247)
        writer.transport.abort()  # no DISCONNECT frame: the host process died
        async with client(watch.address, registry) as c:
            return await c.read_gatt_char(normalize_uuid_16(P.MODEL_NUMBER_UUID))

    assert run(go()) == b"vw-echo"


def test_a_second_central_waits_while_one_is_connected_and_connects_after_it_leaves(watch, registry):
    async def go():
        async with client(watch.address, registry):
            with pytest.raises(BleakError, match="another central"):
                await client(watch.address, registry, timeout=0.3).connect()
            second = client(watch.address, registry, timeout=5.0)
            waiting = asyncio.create_task(second.connect())
            await asyncio.sleep(0.2)
            assert not waiting.done()
        await waiting  # the first central left: the watch advertises again and accepts
        connected = second.is_connected
        await second.disconnect()
        return connected

    assert run(go())


def test_connecting_to_an_unknown_address_says_it_was_not_found(registry):
    with pytest.raises(BleakDeviceNotFoundError):
        run(client("F0:00:00:00:00:00", registry).connect())


# The watch going away -----------------------------------------------------------------------

def _connect_and_wait_for_loss(vw: VirtualWatch, registry: Path, end) -> tuple[float, bool, int | None]:
    async def go():
        lost = asyncio.Event()
        c = client(vw.address, registry, disconnected_callback=lambda _client: lost.set())
        await c.connect()
        await c.start_notify(P.STREAM_UUID, lambda _c, _d: None)
        await end()
        t0 = time.monotonic()
        await asyncio.wait_for(lost.wait(), 1.0)
        return time.monotonic() - t0, c.is_connected, c._backend.disconnect_reason

    return run(go())


def test_killing_the_watch_calls_the_disconnected_callback_within_a_second(registry):
    with echo_watch(registry) as vw:
        async def kill():
            vw.kill()

        took, connected, reason = _connect_and_wait_for_loss(vw, registry, kill)
        assert took < 1.0 and not connected and reason == 0x08  # no goodbye: a supervision timeout


def test_a_watch_that_powers_off_says_goodbye_and_leaves_the_registry(registry):
    # 1 virtual second at 5x after the host connects: the script ends and the radio says goodbye.
    with echo_watch(registry, seconds=1) as vw:
        async def until_exit():
            await asyncio.wait_for(vw.wait(), 10)

        took, connected, reason = _connect_and_wait_for_loss(vw, registry, until_exit)
        assert not connected and reason == 0x13  # the watch ended the connection
        assert vw.returncode == 0 and vw.entry is None


def test_a_script_that_exits_without_goodbye_still_disconnects_the_host(registry):
    with echo_watch(registry, seconds=1, VW_ECHO_GOODBYE="0") as vw:
        async def until_exit():
            await asyncio.wait_for(vw.wait(), 10)

        took, connected, reason = _connect_and_wait_for_loss(vw, registry, until_exit)
        assert not connected and reason == 0x15  # the shim's exit hook: powered off
        assert vw.entry is None


def test_the_clock_waits_for_the_first_host_then_runs_at_its_speed(registry):
    # A 1-second script would be long gone at 5x if the clock ran before anyone connected,
    # and would end at once on connecting if the clock tried to catch up with the wait.
    with echo_watch(registry, seconds=1) as vw:
        time.sleep(0.5)
        assert vw.returncode is None

        async def go():
            async with client(vw.address, registry):
                t0 = time.monotonic()
                await asyncio.wait_for(vw.wait(), 10)
                return time.monotonic() - t0

        assert 0.15 < run(go()) < 2.0  # 1 virtual second at 5x: 0.2 s


def test_a_watch_that_dies_before_advertising_reports_its_stderr(tmp_path, registry):
    script = tmp_path / "broken.py"
    script.write_text("raise RuntimeError('sensor bus on fire')\n")
    with pytest.raises(WearsError, match="sensor bus on fire"):
        VirtualWatch(None, main=script, registry=registry).start()


def test_the_virtual_watch_adds_only_what_its_shims_measured_to_the_board_budget(watch):
    # The virtual watch runs at the board's budget plus the shims' measured heap (and a
    # margin); the shims, the radio and the echo script must fit in that addition.
    from wears.paths import FIRMWARE, board_profile
    from wears.sim import heap
    from wears.sim.runner import micropython_binary, micropython_path_compiled, sim_heap_bytes

    profile = board_profile()
    shims = heap.shim_bytes(profile, micropython_binary(), micropython_path_compiled())
    frozen = heap.frozen_bytes(profile, micropython_binary(), micropython_path_compiled(), FIRMWARE)
    free = int(re.search(r"heap_free (\d+)", watch.stdout).group(1))
    width = heap.width_bytes(profile, micropython_binary(), micropython_path_compiled())
    budget = profile["heap_budget_bytes"]
    assert watch.heap_bytes == sim_heap_bytes(profile)
    # what the GC hands out at that heapsize: the sum, less the watch's own tables (the
    # larger simulated heap's larger tables come on top), within the fixed point's rounding
    pool = watch.heap_bytes - heap.table_bytes(watch.heap_bytes, 32)
    assert abs(pool - (budget + shims + frozen + width + heap.MARGIN - heap.table_bytes(budget, 16))) < 32
    assert 20000 < shims < 80000
    # what the echo script's radio and its own few buffers add: far under the board's budget
    assert watch.heap_bytes - frozen - shims - free < 20000


def test_frozen_credit_counts_every_module_a_frozen_board_imports_boot_or_later():
    # What freezing saves: for the modules imported at boot, measured on their .mpy files; for
    # those imported later (the model's without a model in the flash, the upload's), what their
    # code compiled at boot holds (the sim_frozen shim). Either way the model's code is credited
    # once; a board whose modules load from its filesystem gets none.
    import json

    from wears.paths import FIRMWARE, HARDWARE
    from wears.sim import heap
    from wears.sim.runner import micropython_binary, micropython_path_compiled

    binary, path = micropython_binary(), micropython_path_compiled()
    pinetime = json.loads((HARDWARE / "pinetime.json").read_text())
    xiao = json.loads((HARDWARE / "xiao-nrf52840-sense.json").read_text())
    bare = heap.frozen_bytes(pinetime, binary, path, FIRMWARE)
    with_model = heap.frozen_bytes(pinetime, binary, path, FIRMWARE, model=True)
    # the model's code is credited either way; the pools of interned names grow in steps (14 KB)
    assert 20000 < with_model and 20000 < bare and abs(bare - with_model) < 16000
    assert "watch/upload" not in heap.firmware_modules(pinetime, model=True)  # imported later, if at all
    assert "watch.upload" in heap.late_modules(pinetime, model=True)
    assert "watch.model" in heap.late_modules(pinetime) and "watch.model" not in heap.late_modules(pinetime, True)
    assert "watch/model" not in heap.firmware_modules(pinetime)
    # what only a load runs is dropped after it (watch.app): never a boot module, always compiled
    # at boot as the image's flash holds it
    for module in ("watch/loader", "watch/blob", "watch/trees_v1"):
        assert module not in heap.firmware_modules(pinetime, model=True)
        assert module.replace("/", ".") in heap.late_modules(pinetime, model=True)
    assert heap.frozen_bytes(xiao, binary, path, FIRMWARE, model=True) == 0
    assert heap.late_modules(xiao) == {}


def test_pointer_width_credit_halves_objects_but_not_buffer_bytes():
    # The 64-bit binary's objects take twice a 32-bit watch's heap, its buffers' bytes do not:
    # A flash log segment 3 KB larger adds 3 KB of buffer bytes and no object to halve.
    import json

    from wears.paths import HARDWARE
    from wears.sim import heap
    from wears.sim.runner import micropython_binary, micropython_path_compiled

    binary, path = micropython_binary(), micropython_path_compiled()
    pinetime = json.loads((HARDWARE / "pinetime.json").read_text())
    width = heap.width_bytes(pinetime, binary, path)
    more = heap.width_bytes({**pinetime, "log_segment_bytes": pinetime["log_segment_bytes"] + 3072}, binary, path)
    assert 8000 < width < 40000
    assert width <= more < width + 1024, (width, more)


def test_flash_folder_holds_the_board_profile_named_after_the_watch_and_its_key(watch):
    import json

    board = json.loads((watch.flash_dir / "board.json").read_text())
    assert board["name"] == "WEARS-VW01" and board["heap_budget_bytes"] == 98304
    assert (watch.flash_dir / "key.bin").read_bytes() == watch.key and len(watch.key) == 32


# Pure parts of watch.radio in CPython ---------------------------------------------------------

def test_heart_rate_measurement_encoding_matches_the_spec():
    buf = bytearray(40)
    n = R.encode_heart_rate(buf, 72, True, [819, 840], 2)
    assert buf[:n] == bytes([0x16, 72, 0x33, 0x03, 0x48, 0x03])
    n = R.encode_heart_rate(buf, 300, False, [], 0)
    assert buf[:n] == bytes([0x05, 0x2C, 0x01])  # uint16 format, contact supported but lost
    n = R.encode_heart_rate(buf, 60, None, [1024], 1)
    assert buf[:n] == bytes([0x10, 60, 0x00, 0x04])  # no contact feature: bits 1-2 clear
    # At the minimum MTU (20-byte payload) 9 RR intervals fit with uint8 BPM, 8 with uint16,
    # and the oldest go first (Heart Rate Service 1.0, 3.1.1.5).
    assert R.encode_heart_rate(buf, 72, True, list(range(100, 120)), 20, 20) == 20
    assert struct.unpack_from("<9H", buf, 2) == tuple(range(100, 109))
    assert R.encode_heart_rate(buf, 256, True, list(range(100, 120)), 20, 20) == 19
    assert struct.unpack_from("<8H", buf, 3) == tuple(range(100, 108))


def test_advertising_payload_fits_31_bytes_and_decodes_to_what_the_radio_advertises():
    adv = R.adv_payload(0x06, uuids16=(P.HR_SERVICE_UUID,), uuids128=(P.SERVICE_UUID,))
    assert len(adv) <= 31
    fields = parse_advertising(adv)
    assert fields["service_uuids"] == [P.SERVICE_UUID, normalize_uuid_16(P.HR_SERVICE_UUID)]
    assert parse_advertising(R.adv_payload(name="WEARS-VW01"))["local_name"] == "WEARS-VW01"
    long_name = R.adv_payload(name="x" * 40)
    assert len(long_name) == 31 and long_name[1] == 0x08  # shortened local name


class FakeBLE:
    """The `bluetooth.BLE` calls Radio makes, recorded (CPython unit tests)."""

    def __init__(self):
        self.values: dict[int, bytes] = {}
        self.notified: list[tuple[int, bytes]] = []
        self.full = False

    def active(self, *a):
        return True

    def config(self, *a, **k):
        return None

    def irq(self, handler):
        self.handler = handler

    def gatts_register_services(self, services):
        handles, h = [], 0
        for _, chars in services:
            handles.append(tuple(range(h + 1, h + 1 + len(chars))))
            h += len(chars)
        return tuple(handles)

    def gatts_set_buffer(self, *a):
        pass

    def gatts_write(self, handle, data):
        self.values[handle] = data.encode() if isinstance(data, str) else bytes(data)

    def gatts_read(self, handle):
        return self.values[handle]

    def gatts_notify(self, conn, handle, data=None):
        if self.full:
            raise OSError(12)
        self.notified.append((handle, bytes(self.values[handle] if data is None else data)))

    def gap_advertise(self, *a, **k):
        pass

    def gattc_exchange_mtu(self, conn):
        pass

    def gap_disconnect(self, conn):
        return True


class FakeClock:
    def __init__(self):
        self.ms = 0

    def ticks_ms(self):
        return self.ms

    @staticmethod
    def ticks_diff(a, b):
        return a - b


@pytest.fixture
def radio(monkeypatch):
    ble = FakeBLE()
    clock = FakeClock()
    monkeypatch.setattr(R, "bluetooth", type("bluetooth", (), {"BLE": lambda: ble, "UUID": staticmethod(lambda u: u)}))
    monkeypatch.setattr(G, "time", clock)  # the pacing lives in the stack-independent part
    r = R.Radio("WEARS-T", "model", "1.0")
    r.start()
    ble.handler(1, (0, 0, b"\0" * 6))  # a central connects
    ble.handler(21, (0, 247))  # and exchanges the MTU
    return r, ble, clock


def test_host_writes_queue_in_order_and_a_full_queue_drops_and_counts(radio):
    r, ble, _ = radio
    control, upload = r._h_control, r._h_upload
    for i in range(6):
        ble.values[control if i % 2 == 0 else upload] = bytes([i])
        ble.handler(3, (0, control if i % 2 == 0 else upload))
    assert r.writes_dropped == 2  # 4 slots
    seen = []
    while (cmd := r.poll_command()) is not None:
        seen.append((cmd[0], bytes(cmd[1])))
    assert seen == [(R.CONTROL, b"\x00"), (R.UPLOAD, b"\x01"), (R.CONTROL, b"\x02"), (R.UPLOAD, b"\x03")]
    ble.values[control] = b"again"
    ble.handler(3, (0, control))
    assert bytes(r.poll_command()[1]) == b"again"


def test_notifications_are_paced_per_connection_interval_and_refused_when_congested(radio):
    r, ble, clock = radio
    packet = bytearray(20)

    def burst():
        return sum(r.notify_stream(packet, 20) for _ in range(20))

    assert burst() == 6  # one connection event's budget
    clock.ms += 10
    assert burst() == 0  # still the same connection event (30 ms interval)
    clock.ms += 20
    assert burst() == 6  # the next one
    clock.ms += 300
    assert burst() == 6  # a budget does not pile up while the app is idle
    assert r.congested == 14 + 20 + 14 + 14
    clock.ms += 30
    ble.full = True  # the stack's buffers are full
    assert not r.notify_stream(packet, 20) and r.congested == 63
    ble.full = False
    assert not r.notify_stream(bytearray(245), -1) and r.oversize == 1  # over mtu - 3
    ble.handler(2, (0, 0, b"\0" * 6))  # the central leaves
    assert not r.connected and not r.notify_stream(packet, 20) and r.mtu == 23


def test_rr_intervals_that_do_not_fit_wait_for_the_next_heart_rate(radio):
    r, ble, _ = radio
    ble.handler(21, (0, 23))  # minimum MTU: 20-byte payload, 9 RR intervals
    assert r.heart_rate(72, True, list(range(700, 712)), 12)
    assert r.heart_rate(72, True, [], 0)
    (_, first), (_, second) = ble.notified
    assert struct.unpack_from("<9H", first, 2) == tuple(range(700, 709))
    assert struct.unpack_from("<3H", second, 2) == (709, 710, 711) and len(second) == 8


@pytest.mark.parametrize("heapsize", [40960, 216096, 400000])
def test_the_gc_table_formula_matches_the_binary(heapsize, tmp_path):
    # heap.table_bytes is what gc.mem_free() + gc.mem_alloc() leave out of -X heapsize: the
    # bench's peak and the heapsize's credit rest on it (alignment takes up to 4 blocks more: the credit is a little short, conservative).
    from wears.sim import heap
    from wears.sim.runner import micropython_binary

    script = tmp_path / "pool.py"
    script.write_text("import gc\ngc.collect()\nprint(gc.mem_alloc() + gc.mem_free())\n")
    out = subprocess.run([micropython_binary(), "-X", f"heapsize={heapsize}", str(script)], capture_output=True,
                         text=True, timeout=60).stdout
    tables = heapsize - int(out.split()[-1])
    assert 0 <= tables - heap.table_bytes(heapsize, 32) <= 128
