"""The MAX30102 driver against the register model on the virtual I2C bus, inside MicroPython."""

import array
import errno
import os
import time

import machine
import mp_world
from mp_world import expect_oserror, started
import micropython
import sim_scenario
from watch.drivers import max30102
from watch.drivers.max30102 import MAX30102

ADDRESS = 0x57
RATE = 100  # the scenario's PPG rate


def ir_of(i):
    return 100000 + 3 * i


def red_of(i):
    return 200000 - 2 * i


def world(seconds=20, missing="", error_rate=0.0):
    """A fresh bus fed by `seconds` of PPG records that tell their index (ir_of, red_of)."""
    return mp_world.World(seconds, ppg_rate=RATE, ppg=lambda i: (ir_of(i), red_of(i)), missing=missing,
                          error_rate=error_rate)


def buffers(n=32):
    return array.array("I", [0] * n), array.array("I", [0] * n)


def collect(sensor, ir, red, got):
    n = sensor.read(ir, red)
    for i in range(n):
        got.append((ir[i], red[i]))
    return n


def index_of(sample):
    i = (sample[0] - 100000) // 3
    assert sample == (ir_of(i), red_of(i)), sample
    return i


def test_init_checks_part_id_and_configures_spo2_at_100hz():
    with world() as w:
        i2c = w.i2c
        assert ADDRESS in i2c.scan()
        assert i2c.readfrom_mem(ADDRESS, 0xFF, 1)[0] == 0x15
        sensor = MAX30102(i2c)
        sensor.init()
        assert sensor.rate_hz == 100
        regs = i2c.readfrom_mem(ADDRESS, 0x08, 3)  # FIFO_CONFIG, MODE_CONFIG, SPO2_CONFIG
        assert regs[0] == 0x1F, regs  # no averaging, rollover, A_FULL at 17
        assert regs[1] == 0x03, regs  # SpO2 mode, running
        assert regs[2] == 0x27, regs  # 4096 nA, 100 Hz, 411 us
        assert i2c.readfrom_mem(ADDRESS, 0x0C, 2) == b"\x24\x24"
        sensor.init(rate_hz=400)
        assert i2c.readfrom_mem(ADDRESS, 0x0A, 1)[0] == 0x2F


def test_init_rejects_a_rate_the_part_cannot_run_at_411us():
    with world() as w:
        i2c = w.i2c
        try:
            MAX30102(i2c).init(rate_hz=800)
        except ValueError:
            return
        raise AssertionError("800 Hz accepted")


def test_missing_part_raises_enodev_at_init():
    with world(missing="ppg") as w:
        i2c = w.i2c
        assert ADDRESS not in i2c.scan()
        expect_oserror(lambda: MAX30102(i2c).init(), errno.ENODEV)


def test_samples_equal_the_scenario_in_order_and_none_lost():
    with world() as w:
        i2c = w.i2c
        sensor, ir, red, got = started(MAX30102, i2c, buffers())
        elapsed = 0
        for step in range(25):
            ms = 40 + (step * 37) % 250  # irregular polling, always within the 320 ms FIFO
            time.sleep_ms(ms)
            elapsed += ms
            collect(sensor, ir, red, got)
        assert sensor.lost == 0
        # sample k is due at k * 10 ms: all of them up to the last poll, none twice
        assert len(got) == elapsed // 10 + 1, (len(got), elapsed)
        for k in range(len(got)):
            assert got[k] == (ir_of(k), red_of(k)), (k, got[k])


def test_configured_rate_resamples_the_scenario():
    with world() as w:
        i2c = w.i2c
        sensor = MAX30102(i2c)
        sensor.init(rate_hz=50)
        ir, red = buffers()
        got = []
        for _ in range(10):
            time.sleep_ms(200)
            collect(sensor, ir, red, got)
        assert len(got) == 2000 // 20 + 1, len(got)
        for k in range(len(got)):
            assert index_of(got[k]) == 2 * k, (k, got[k])  # 50 Hz takes every 2nd 100 Hz record


def test_fifo_overflow_is_counted_exactly_in_lost():
    with world() as w:
        i2c = w.i2c
        sensor, ir, red, got = started(MAX30102, i2c, buffers())
        collect(sensor, ir, red, got)  # sample 0
        time.sleep_ms(420)  # samples 1..42 arrive; the FIFO holds 32: 10 overwritten
        assert collect(sensor, ir, red, got) == 32
        assert sensor.lost == 10, sensor.lost
        assert [index_of(s) for s in got] == [0] + list(range(11, 43))
        time.sleep_ms(100)
        collect(sensor, ir, red, got)
        assert index_of(got[-1]) == 52 and sensor.lost == 10


def test_saturated_overflow_counter_is_completed_from_elapsed_time():
    with world() as w:
        i2c = w.i2c
        sensor, ir, red, got = started(MAX30102, i2c, buffers())
        collect(sensor, ir, red, got)
        time.sleep_ms(2000)  # 200 samples: OVF_COUNTER stops at 31
        assert i2c.readfrom_mem(ADDRESS, 0x05, 1)[0] == 0x1F
        assert collect(sensor, ir, red, got) == 32
        assert 167 <= sensor.lost <= 169, sensor.lost
        assert index_of(got[-1]) == 200
        assert index_of(got[-1]) + 1 == len(got) + sensor.lost


def test_read_stops_at_the_capacity_of_the_arrays_and_keeps_the_rest():
    with world() as w:
        i2c = w.i2c
        sensor = MAX30102(i2c)
        sensor.init()
        ir, red = buffers(8)
        got = []
        time.sleep_ms(200)  # 21 samples waiting
        assert collect(sensor, ir, red, got) == 8
        assert collect(sensor, ir, red, got) == 8
        assert collect(sensor, ir, red, got) == 5
        assert [index_of(s) for s in got] == list(range(21)) and sensor.lost == 0


def test_bus_error_surfaces_as_oserror_and_the_next_read_works():
    with world() as w:
        i2c = w.i2c
        sensor, ir, red, got = started(MAX30102, i2c, buffers())
        time.sleep_ms(50)
        machine.sim_fail_next()
        expect_oserror(lambda: sensor.read(ir, red), errno.EIO)
        collect(sensor, ir, red, got)
        assert [index_of(s) for s in got] == list(range(6)) and sensor.lost == 0
        # A failure after the first burst popped samples: they are counted, never silent.
        time.sleep_ms(30)  # 3 samples: bursts of 2 and 1
        machine.sim_fail_next(after=2)
        expect_oserror(lambda: sensor.read(ir, red))
        assert sensor.lost == 2, sensor.lost
        time.sleep_ms(20)
        collect(sensor, ir, red, got)
        assert [index_of(s) for s in got] == list(range(6)) + [8, 9, 10]


def test_random_bus_errors_never_lose_samples_silently():
    with world(error_rate=0.1) as w:
        sensor = MAX30102(w.i2c)
        for _ in range(50):
            try:
                sensor.init()
                break
            except OSError:
                pass
        ir, red = buffers()
        got = []
        errors = 0
        for _ in range(60):
            time.sleep_ms(100)
            try:
                collect(sensor, ir, red, got)
            except OSError:
                errors += 1
        assert errors > 3, errors
        last = index_of(got[-1])
        assert last + 1 == len(got) + sensor.lost, (last, len(got), sensor.lost)
        for a, b in zip(got, got[1:]):
            assert index_of(b) > index_of(a)


def test_disable_stops_sampling_and_enable_resumes():
    with world() as w:
        i2c = w.i2c
        sensor, ir, red, got = started(MAX30102, i2c, buffers())
        time.sleep_ms(100)
        collect(sensor, ir, red, got)
        sensor.disable()
        assert i2c.readfrom_mem(ADDRESS, 0x09, 1)[0] & 0x80
        time.sleep_ms(500)
        assert sensor.read(ir, red) == 0
        sensor.enable()
        time.sleep_ms(100)
        n = collect(sensor, ir, red, got)
        assert n == 11 and sensor.lost == 0, (n, sensor.lost)
        assert index_of(got[-1]) == 70  # 600 ms + 100 ms after init


def test_read_allocates_nothing():
    with world() as w:
        i2c = w.i2c
        sensor, ir, red, _ = started(MAX30102, i2c, buffers())
        time.sleep_ms(250)  # 26 samples: bursts of 16, 8 and 2
        micropython.heap_lock()
        try:
            n = sensor.read(ir, red)
        finally:
            micropython.heap_unlock()
        assert n == 26 and ir[25] == ir_of(25) and red[25] == red_of(25)


def test_viper_and_python_unpack_agree():
    buf = bytearray(os.urandom(6 * 5))
    a, b = buffers(8)
    c, d = buffers(8)
    max30102._unpack(buf, 5, a, b, 2)
    max30102._unpack_py(buf, 5, c, d, 2)
    assert list(a) == list(c) and list(b) == list(d)
    assert max(a) <= 0x3FFFF and a[2] == ((buf[0] << 16) | (buf[1] << 8) | buf[2]) & 0x3FFFF


def test_end_of_scenario_powers_the_watch_off_after_the_hooks():
    called = []
    w = world(seconds=1)
    try:
        machine.on_power_off(lambda: called.append(1))
        sensor = MAX30102(w.i2c)
        sensor.init()
        ir, red = buffers()
        time.sleep_ms(300)
        sensor.read(ir, red)
        assert not called
        time.sleep_ms(800)
        try:
            sensor.read(ir, red)
        except SystemExit as e:
            assert called == [1]
            assert not e.args or e.args[0] == 0
            return
        raise AssertionError("the watch kept running past the scenario")
    finally:
        sim_scenario._hooks.clear()
        sim_scenario.powered_on()
        w.__exit__()


def test_adc_range_and_led_current_scale_the_counts():
    with world() as w:
        i2c = w.i2c
        sensor, ir, red, got = started(MAX30102, i2c, buffers())
        i2c.writeto_mem(ADDRESS, 0x0A, b"\x47")  # 8192 nA full scale: half the counts
        i2c.writeto_mem(ADDRESS, 0x0D, b"\x48")  # IR LED at 14.4 mA: twice the light
        time.sleep_ms(50)
        collect(sensor, ir, red, got)
        k = len(got) - 1  # samples 0..k, all taken after the change
        assert got[k] == (ir_of(k), red_of(k) // 2), (got[k], k)
        i2c.writeto_mem(ADDRESS, 0x0A, b"\x24")  # 69 us pulses: 15-bit, left-justified
        time.sleep_ms(20)
        collect(sensor, ir, red, got)
        assert got[-1][0] & 0x7 == 0 and got[-1][1] & 0x7 == 0
