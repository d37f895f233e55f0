"""The HRS3300 driver (polled, no FIFO) against its register model, inside MicroPython."""

import array
import errno
import time

import machine
import micropython
from mp_world import PINETIME, World, expect_oserror
from watch.drivers.hrs3300 import HRS3300


def ppg_of(i):
    return (100000 + 40 * i, 0)


def world(seconds=30):
    return World(seconds=seconds, ppg_rate=100, ppg=ppg_of, sensors=PINETIME)


def buffers(n=32):
    return array.array("I", [0] * n), array.array("I", [0] * n)


def run(sensor, ms, step_ms=None):
    """Poll as the app does: sleep until due, poll; for `ms` of virtual time."""
    end = time.ticks_add(time.ticks_ms(), ms)
    while time.ticks_diff(end, time.ticks_ms()) > 0:
        wait = sensor.until_due_us()
        if step_ms:
            time.sleep_ms(step_ms)
        elif wait > 0:
            time.sleep_us(wait)
        sensor.poll()


def test_init_checks_id_and_turns_on_led_and_conversions():
    with world() as w:
        s = HRS3300(w.i2c)
        s.init(rate_hz=25)
        assert w.i2c.readfrom_mem(0x44, 0x00, 1) == b"\x21"
        assert w.i2c.readfrom_mem(0x44, 0x01, 1)[0] & 0x80  # HEN
        assert w.i2c.readfrom_mem(0x44, 0x16, 2) == bytes((0x88, 0x10))  # 16-bit, 64x


def test_polled_samples_follow_the_scenario_at_the_rate():
    with world() as w:
        s = HRS3300(w.i2c)
        s.init(rate_hz=25)
        ppg, als = buffers()
        run(s, 1000)
        n = s.read(ppg, als)
        assert 24 <= n <= 25 and s.lost == 0, (n, s.lost)
        assert 0 < ppg[0] < ppg[n - 1] < 65536 and als[0] == 300
        # 40 counts per 10 ms in 18-bit scenario units: 40 ms apart is 160/4 = 40 in 16 bits
        steps = [ppg[i + 1] - ppg[i] for i in range(n - 1)]
        assert all(30 <= d <= 50 for d in steps), steps


def test_late_polls_leave_a_counted_gap_after_the_samples_before_it():
    with world() as w:
        s = HRS3300(w.i2c)
        s.init(rate_hz=25)
        ppg, als = buffers()
        run(s, 400)
        before = s._count
        time.sleep_ms(200)  # five periods without a poll
        s.poll()
        n = s.read(ppg, als)
        assert n == before and s.lost == 0  # the samples before the gap, at their own indices
        n = s.read(ppg, als)
        assert n == 1 and s.lost == 4, (n, s.lost)  # then the gap, then the late sample


def test_a_full_ring_drops_the_oldest_and_counts_it():
    with world() as w:
        s = HRS3300(w.i2c)
        s.init(rate_hz=50)
        ppg, als = buffers(64)
        run(s, 1000)  # 50 polls into a ring of 32
        n = s.read(ppg, als)
        assert n == 32 and s.lost + n in (49, 50), (n, s.lost)


def test_poll_and_read_allocate_nothing():
    with world() as w:
        s = HRS3300(w.i2c)
        s.init(rate_hz=25)
        ppg, als = buffers()
        time.sleep_ms(40)
        micropython.heap_lock()
        try:
            took = s.poll()
            n = s.read(ppg, als)
        finally:
            micropython.heap_unlock()
        assert took and n == 1


def test_bus_error_during_poll_retries_without_losing_the_slot():
    with world() as w:
        s = HRS3300(w.i2c)
        s.init(rate_hz=25)
        time.sleep_ms(40)
        machine.sim_fail_next(after=2)
        expect_oserror(s.poll)
        assert s.poll() and s.lost == 0


def test_power_down_clears_hen_and_pon():
    with world() as w:
        s = HRS3300(w.i2c)
        s.init()
        s.disable()
        assert not w.i2c.readfrom_mem(0x44, 0x01, 1)[0] & 0x80
        assert not w.i2c.readfrom_mem(0x44, 0x0C, 1)[0] & 0x20
        time.sleep_ms(100)
        assert not s.poll()


def test_missing_part_raises_enodev():
    with World(sensors=PINETIME, missing="ppg") as w:
        expect_oserror(lambda: HRS3300(w.i2c).init(), errno.ENODEV)
