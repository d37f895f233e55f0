"""The LSM6DS3TR-C driver against the register model on the virtual I2C bus, inside MicroPython."""

import array
import errno
import os
import struct
import time

import machine
import mp_world
from mp_world import expect_oserror, started
import micropython
from watch.drivers import lsm6ds3
from watch.drivers.lsm6ds3 import LSM6DS3

ADDRESS = 0x6A


def record(i):
    """Scenario IMU record i: accel x, y, z in mg, gyro x, y, z in 0.1 dps (all tell i)."""
    return (i, -2 * i, 1000, i, -i, 250)


def lsb(num, den):
    """round(num / den) as the part rounds, half away from zero."""
    q = (2 * abs(num) + den) // (2 * den)
    return q if num >= 0 else -q


def expected(i, accel_ug=122, gyro_udps=17500):
    r = record(i)
    acc = tuple(lsb(v * 1000, accel_ug) for v in r[:3])
    gyro = tuple(lsb(v * 100000, gyro_udps) for v in r[3:])
    return acc, gyro


def index_of(sample):
    """The scenario record a (+-4 g, 500 dps) sample came from."""
    i = (sample[0][0] * 122 + 500) // 1000
    assert sample == expected(i), (i, sample, expected(i))
    return i


def world(imu_rate=52, seconds=20, missing=""):
    """A fresh bus fed by `seconds` of IMU records that tell their index (record)."""
    return mp_world.World(seconds, imu_rate=imu_rate, imu=record, missing=missing)


def buffers(n=64):
    return array.array("h", [0] * (3 * n)), array.array("h", [0] * (3 * n))


def sample(acc, gyro, i):
    return tuple(acc[3 * i:3 * i + 3]), tuple(gyro[3 * i:3 * i + 3])


def collect(sensor, acc, gyro, got, convert=None):
    """Read once; append each sample's scenario index (checked), or convert(sample)."""
    n = sensor.read(acc, gyro)
    for i in range(n):
        got.append((convert or index_of)(sample(acc, gyro, i)))
    return n


def test_init_checks_who_am_i_and_configures_rate_range_and_fifo():
    with world() as w:
        i2c = w.i2c
        assert ADDRESS in i2c.scan()
        assert i2c.readfrom_mem(ADDRESS, 0x0F, 1)[0] == 0x6A
        sensor = LSM6DS3(i2c)
        sensor.init()
        assert i2c.readfrom_mem(ADDRESS, 0x10, 3) == b"\x38\x34\x44"  # 52 Hz 4 g, 52 Hz 500 dps, BDU|IF_INC
        assert i2c.readfrom_mem(ADDRESS, 0x08, 1)[0] == 0x09  # gyro and accel in FIFO, no decimation
        assert i2c.readfrom_mem(ADDRESS, 0x0A, 1)[0] == 0x1E  # FIFO at 52 Hz, continuous
        assert abs(sensor.accel_unit - 0.122e-3) < 1e-9 and abs(sensor.gyro_unit - 17.5e-3) < 1e-9
        sensor.init(rate_hz=12.5, accel_range_g=16, gyro_range_dps=125)
        assert i2c.readfrom_mem(ADDRESS, 0x10, 2) == b"\x14\x12"
        assert abs(sensor.accel_unit - 0.488e-3) < 1e-9 and abs(sensor.gyro_unit - 4.375e-3) < 1e-9


def test_init_rejects_unsupported_rate_and_ranges():
    with world() as w:
        i2c = w.i2c
        for kwargs in ({"rate_hz": 50}, {"accel_range_g": 3}, {"gyro_range_dps": 300}):
            try:
                LSM6DS3(i2c).init(**kwargs)
            except ValueError:
                continue
            raise AssertionError("accepted " + str(kwargs))


def test_missing_part_raises_enodev_at_init():
    with world(missing="imu") as w:
        i2c = w.i2c
        assert ADDRESS not in i2c.scan() and 0x57 in i2c.scan()
        expect_oserror(lambda: LSM6DS3(i2c).init(), errno.ENODEV)


def test_samples_equal_the_scenario_in_order_and_none_lost():
    with world() as w:
        i2c = w.i2c
        sensor, acc, gyro, got = started(LSM6DS3, i2c, buffers())
        elapsed = 0
        for step in range(20):
            ms = 30 + (step * 53) % 400
            time.sleep_ms(ms)
            elapsed += ms
            collect(sensor, acc, gyro, got)
        assert sensor.lost == 0
        first = got[0]
        assert first <= 1, first  # sample 0 may be taken before the FIFO runs
        assert got == list(range(first, first + len(got))), got
        assert first + len(got) == elapsed * 52 // 1000 + 1, (first, len(got), elapsed)


def test_configured_range_and_rate_change_the_samples():
    with world() as w:
        i2c = w.i2c
        sensor = LSM6DS3(i2c)
        sensor.init(rate_hz=104, accel_range_g=8, gyro_range_dps=2000)
        acc, gyro = buffers()
        k = 1  # sensor sample 0 is taken at init, before the FIFO runs

        def check(s):
            nonlocal k
            t_us = k * 1000000000 // 104000
            i = (t_us * 52 + 500000) // 1000000  # the nearest 52 Hz record
            assert s == expected(i, 244, 70000), (k, s, expected(i, 244, 70000))
            k += 1

        got = []
        for _ in range(8):
            time.sleep_ms(250)
            collect(sensor, acc, gyro, got, check)
        assert k == 2000 * 104 // 1000 + 1, k


def test_fifo_overrun_is_counted_in_lost_and_the_fifo_restarts():
    with world(imu_rate=208, seconds=6) as w:
        i2c = w.i2c
        sensor = LSM6DS3(i2c)
        sensor.init(rate_hz=208)
        acc, gyro = buffers()
        got = []
        time.sleep_ms(100)
        collect(sensor, acc, gyro, got)
        before = got[-1]
        time.sleep_ms(2000)  # 416 sets; the FIFO holds 341
        assert i2c.readfrom_mem(ADDRESS, 0x3B, 1)[0] & 0x40  # OVER_RUN
        assert sensor.read(acc, gyro) == 0
        assert sensor.lost > 0
        time.sleep_ms(100)
        collect(sensor, acc, gyro, got)
        after = got[len(got) - 21]  # first sample after the restart
        truly_lost = after - before - 1
        assert abs(sensor.lost - truly_lost) <= 1, (sensor.lost, truly_lost)
        assert got[-21:] == list(range(after, after + 21)), got[-21:]


def test_read_stops_at_max_samples_and_keeps_the_rest():
    with world() as w:
        i2c = w.i2c
        sensor = LSM6DS3(i2c, max_samples=16)
        sensor.init()
        acc, gyro = buffers(16)
        got = []
        time.sleep_ms(1000)  # 52 sets waiting
        assert collect(sensor, acc, gyro, got) == 16
        assert collect(sensor, acc, gyro, got) == 16
        assert collect(sensor, acc, gyro, got) == 16
        assert collect(sensor, acc, gyro, got) == 52 - 48
        assert got == list(range(got[0], got[0] + 52)) and sensor.lost == 0


def test_half_read_set_is_realigned_by_the_fifo_pattern_and_counted():
    with world() as w:
        i2c = w.i2c
        sensor, acc, gyro, got = started(LSM6DS3, i2c, buffers())
        time.sleep_ms(200)
        i2c.readfrom_mem(ADDRESS, 0x3E, 4)  # two words of the first set, as a broken transfer would
        assert i2c.readfrom_mem(ADDRESS, 0x3C, 1)[0] == 2  # FIFO_PATTERN: next is gyro z
        collect(sensor, acc, gyro, got)
        assert sensor.lost == 1
        assert got == list(range(got[0], got[0] + len(got)))


def test_bus_error_surfaces_as_oserror_and_the_next_read_works():
    with world() as w:
        i2c = w.i2c
        sensor, acc, gyro, got = started(LSM6DS3, i2c, buffers())
        time.sleep_ms(100)
        machine.sim_fail_next()
        expect_oserror(lambda: sensor.read(acc, gyro), errno.EIO)
        collect(sensor, acc, gyro, got)
        time.sleep_ms(60)  # 3 sets: bursts of 2 and 1
        machine.sim_fail_next(after=2)
        expect_oserror(lambda: sensor.read(acc, gyro))
        assert sensor.lost == 2, sensor.lost
        time.sleep_ms(100)
        collect(sensor, acc, gyro, got)
        assert got[-1] + 1 - got[0] == len(got) + sensor.lost, (got, sensor.lost)


def test_disable_powers_down_and_stops_samples():
    with world() as w:
        i2c = w.i2c
        sensor, acc, gyro, _ = started(LSM6DS3, i2c, buffers())
        time.sleep_ms(100)
        sensor.read(acc, gyro)
        sensor.disable()
        assert i2c.readfrom_mem(ADDRESS, 0x10, 2) == b"\x08\x04"  # ODR 0, ranges kept
        time.sleep_ms(500)
        assert sensor.read(acc, gyro) == 0 and sensor.lost == 0
        sensor.enable()
        time.sleep_ms(100)
        assert sensor.read(acc, gyro) > 0


def test_read_allocates_nothing():
    with world() as w:
        i2c = w.i2c
        sensor, acc, gyro, _ = started(LSM6DS3, i2c, buffers())
        time.sleep_ms(900)  # 46-47 sets: several bursts
        micropython.heap_lock()
        try:
            n = sensor.read(acc, gyro)
        finally:
            micropython.heap_unlock()
        assert n >= 46
        index_of(sample(acc, gyro, n - 1))


def test_viper_and_python_unpack_agree():
    buf = bytearray(os.urandom(12 * 3))
    a, b = buffers(5)
    c, d = buffers(5)
    lsm6ds3._unpack(buf, 3, a, b, 1)
    lsm6ds3._unpack_py(buf, 3, c, d, 1)
    assert list(a) == list(c) and list(b) == list(d)
    assert b[3] == struct.unpack_from("<h", buf, 0)[0] and a[3] == struct.unpack_from("<h", buf, 6)[0]
