"""BMA421 and BMI160 drivers (Bosch header-mode FIFO) against their register models, inside MicroPython."""

import array
import errno
import time

import machine
import micropython
from mp_world import BMI160_BUS, PINETIME, World, expect_oserror
from watch.drivers.bma421 import BMA421
from watch.drivers.bmi160 import BMI160


def imu_of(i):
    """Accel x tells the record index (mg), gyro x too (0.1 dps)."""
    return (i % 2000, -(i % 1000), 1000, i % 3000, 5, -5)


def buffers(n=64):
    return array.array("h", [0] * (3 * n)), array.array("h", [0] * (3 * n))


def index_from_acc(x, g=4, bits=12):
    # mg -> LSB at +-g over 32768, truncated to `bits`: invert with rounding
    return (x * g * 1000 + 16384) // 32768


def collect_bma(sensor, acc, gyro, out):
    n = sensor.read(acc, gyro)
    for i in range(n):
        out.append(acc[3 * i])
    return n


def bma(seconds=30, rate=100, imu_rate=100):
    w = World(seconds=seconds, imu_rate=imu_rate, imu=imu_of, sensors=PINETIME)
    s = BMA421(w.i2c)
    s.init(rate_hz=rate, accel_range_g=4)
    return w, s


def test_bma421_init_checks_chip_id_and_configures_fifo_and_odr():
    w, s = bma()
    with w:
        i2c = w.i2c
        assert i2c.readfrom_mem(0x18, 0x00, 1) == b"\x11"
        assert i2c.readfrom_mem(0x18, 0x40, 2) == bytes((0xA8, 0x01))  # 100 Hz, perf mode, 4 g
        assert i2c.readfrom_mem(0x18, 0x48, 2) == bytes((0x00, 0x50))  # stream mode, acc + headers
        assert i2c.readfrom_mem(0x18, 0x7D, 1) == b"\x04"
        assert abs(s.accel_unit - 4 / 32768) < 1e-9
        s.init(rate_hz=25)
        assert i2c.readfrom_mem(0x18, 0x40, 1)[0] & 0x0F == 6


def test_bma421_rejects_a_rate_it_has_no_odr_for():
    w, s = bma()
    with w:
        try:
            s.init(rate_hz=30)
        except ValueError:
            return
        raise AssertionError("30 Hz accepted")


def test_bma421_every_sample_in_order_across_reads():
    w, s = bma()
    with w:
        acc, gyro = buffers()
        got = []
        for _ in range(30):
            time.sleep_ms(100)
            collect_bma(s, acc, gyro, got)
        assert len(got) >= 295 and s.lost == 0, (len(got), s.lost)
        # 12-bit values: 1.95 mg steps, so consecutive records differ by about one step
        assert got[0] == (0 * 32768 // 4000) & ~0xF
        assert all(got[i] <= got[i + 1] for i in range(len(got) - 1))


def test_bma421_overflow_is_a_counted_gap_from_the_skip_frame():
    w, s = bma(rate=100)
    with w:
        acc, gyro = buffers(64)
        time.sleep_ms(3000)  # 300 frames into a FIFO of 145: 155 or so skipped
        total = 0
        while True:
            n = s.read(acc, gyro)
            if not n and total:
                break
            total += n
        assert s.lost + total >= 299 and s.lost > 100, (s.lost, total)
        assert s.lost + total <= 301, (s.lost, total)


def test_bma421_read_allocates_nothing():
    w, s = bma()
    with w:
        acc, gyro = buffers()
        time.sleep_ms(300)
        micropython.heap_lock()
        try:
            n = s.read(acc, gyro)
        finally:
            micropython.heap_unlock()
        assert n >= 29, n


def test_bma421_power_down_stops_the_fifo():
    w, s = bma()
    with w:
        acc, gyro = buffers()
        time.sleep_ms(200)
        s.read(acc, gyro)
        s.disable()
        assert w.i2c.readfrom_mem(0x18, 0x7D, 1) == b"\x00"
        time.sleep_ms(500)
        assert s.read(acc, gyro) <= 1
        s.enable()
        time.sleep_ms(200)
        assert s.read(acc, gyro) >= 19


def test_bma421_missing_part_raises_enodev():
    with World(sensors=PINETIME, missing="imu") as w:
        expect_oserror(lambda: BMA421(w.i2c).init(), errno.ENODEV)


def test_bma421_bus_error_mid_read_propagates_and_the_next_read_loses_nothing():
    w, s = bma()
    with w:
        acc, gyro = buffers()
        time.sleep_ms(200)
        machine.sim_fail_next(after=1)  # the FIFO_LENGTH read passes, the data burst fails
        expect_oserror(lambda: s.read(acc, gyro))
        got = []
        time.sleep_ms(100)
        collect_bma(s, acc, gyro, got)
        assert len(got) >= 29 and s.lost == 0, (len(got), s.lost)


def test_bmi160_gyro_and_accel_through_one_fifo():
    with World(imu_rate=50, imu=imu_of, sensors=BMI160_BUS) as w:
        s = BMI160(w.i2c)
        s.init(rate_hz=50, accel_range_g=4, gyro_range_dps=500)
        assert w.i2c.readfrom_mem(0x68, 0x00, 1) == b"\xd1"
        assert w.i2c.readfrom_mem(0x68, 0x03, 1)[0] == 0x14  # both in normal mode
        acc, gyro = buffers()
        time.sleep_ms(1000)
        n = s.read(acc, gyro)
        assert n >= 45 and s.lost == 0, n
        for i in range(n):
            assert acc[3 * i + 2] == (1000 * 32768 + 2000) // 4000  # 1 g on z at 4 g
            assert gyro[3 * i + 1] == (5 * 32768 + 2500) // 5000  # 0.5 dps at 500 dps
        s.disable()
        assert w.i2c.readfrom_mem(0x68, 0x03, 1)[0] == 0


def test_bmi160_overflow_is_counted():
    with World(imu_rate=100, sensors=BMI160_BUS) as w:
        s = BMI160(w.i2c)
        s.init(rate_hz=100)
        acc, gyro = buffers()
        t0 = time.ticks_ms()
        time.sleep_ms(2000)
        total = 0
        for _ in range(10):
            total += s.read(acc, gyro)
        made = time.ticks_diff(time.ticks_ms(), t0) // 10
        assert s.lost > 50 and abs(s.lost + total - made) <= 2, (s.lost, total, made)
