"""The motion-robust heart rate inside MicroPython: feeding and computing allocate nothing, the
viper DFT equals the plain one on every window, the estimator keeps to its memory budget and
follows the pulse, not the arm swing."""

import gc
import math
from array import array

import micropython
from watch import heart_rate as H
from watch.heart_rate import HeartRate

_SINE = array("i", [int(round(1000 * math.sin(2 * math.pi * i / 1024))) for i in range(1024)])


class Wrist:
    """A pulse of `bpm`; after `rest_s`, an arm swinging at `swing_mhz` that moves the PPG three
    times as much as the pulse does. Integer phase accumulators over a sine table, so that it
    runs under heap_lock."""

    def __init__(self, bpm, swing_mhz, seed=1, rest_s=10, ppg_hz=100, imu_hz=52, dc=110000):
        self.pulse = bpm * 1024 * 1000 // 60  # phase step per second, 1/1000 of a table entry
        self.swing = swing_mhz * 1024
        self.seed = seed
        self.rest_s = rest_s
        self.ppg_hz = ppg_hz
        self.imu_hz = imu_hz
        self.dc = dc  # the PPG's level

    def rand(self):
        self.seed = (self.seed * 25173 + 13849) & 0xFFFF
        return self.seed

    def ppg(self, buf, i0, n):
        for i in range(n):
            p = ((i0 + i) * self.pulse // (1000 * self.ppg_hz)) & 1023
            s = ((i0 + i) * self.swing // (1000 * self.ppg_hz)) & 1023 if i0 + i >= self.ppg_hz * self.rest_s else 0
            buf[i] = self.dc - _SINE[p] + 3 * _SINE[s] + (self.rand() & 63)

    def acc(self, buf, i0, n):
        for i in range(n):
            s = ((i0 + i) * self.swing // (1000 * self.imu_hz)) & 1023 if i0 + i >= self.imu_hz * self.rest_s else 0
            buf[3 * i] = 8 * _SINE[s] + (self.rand() & 127)
            buf[3 * i + 1] = (self.rand() & 127) - 64
            buf[3 * i + 2] = 8192 + 2 * _SINE[(2 * s) & 1023]


def run(hr, seconds, wrist, results=None, lock=False, gap_at=-1, gap=0):
    """Feeds the wrist's PPG and accelerometer (100 and 52 Hz unless it says otherwise) in
    bursts; computes every ready window. gap_at: a PPG index after which `gap` samples go
    missing (a FIFO overflow)."""
    ir = array("I", [0] * 32)
    acc = array("h", [0] * 48)
    ip = ia = windows = 0
    gc.collect()
    if lock:
        micropython.heap_lock()
    try:
        while ip < wrist.ppg_hz * seconds:
            n = 1 + (wrist.rand() & 31) * wrist.ppg_hz // 100  # up to 32 at 100 Hz, 8 at 25 Hz: 0.32 s
            if ip <= gap_at < ip + n:
                ip += gap
            wrist.ppg(ir, ip, n)
            hr.add_ppg(ir, n, ip)
            ip += n
            while ia * wrist.ppg_hz < ip * wrist.imu_hz:
                m = 1 + (wrist.rand() & 15)
                wrist.acc(acc, ia, m)
                hr.add_acc(acc, m, ia)
                ia += m
            while hr.compute() >= 0:
                windows += 1
                if results is not None:
                    results.append((hr.window_end, hr.bpm_x10, hr.quality))
    finally:
        if lock:
            micropython.heap_unlock()
    return windows


def test_feeding_and_computing_allocate_nothing():
    for fast in (True, False):
        for imu_rate in (52, 0):  # with the motion gate, and a watch without accelerometer
            hr = HeartRate(100, imu_rate, fast=fast)
            windows = run(hr, 30, Wrist(72, 2600), lock=True)
            assert windows == (30 - 8) // 2 + 1, windows  # 8 s windows every 2 s
            assert abs(hr.bpm_x10 - 720) <= 15 if imu_rate else hr.bpm_x10 > 0, hr.bpm_x10


def test_lost_samples_are_held_and_windows_stay_on_the_grid():
    for fast in (True, False):
        hr = HeartRate(100, 52, fast=fast)
        results = []
        run(hr, 30, Wrist(80, 2000), results, lock=False, gap_at=1500, gap=30)
        assert [r[0] for r in results] == list(range(800, 3001, 200)), results
        assert all(abs(r[1] - 800) <= 40 for r in results), results
        hr = HeartRate(100, 52, fast=fast)
        assert run(hr, 30, Wrist(80, 2000), lock=True, gap_at=1500, gap=30) == 12  # and allocates nothing


def test_viper_and_plain_dft_agree_on_every_window():
    assert H.VIPER, "this MicroPython has no viper emitter"
    got = []
    spectra = []
    for fast in (True, False):
        hr = HeartRate(100, 52, fast=fast)
        assert (hr._dft is H.dft_viper) == fast
        results = []
        run(hr, 24, Wrist(90, 1700, seed=3), results)
        got.append(results)
        spectra.append((list(hr._dft_out), list(hr._a)))
    assert len(got[0]) == 9 and got[0] == got[1], got
    assert spectra[0] == spectra[1]


def test_a_16_bit_ppg_at_25_hz_keeps_a_16_bit_ring_with_the_same_estimates():
    # The PineTime (HRS3300: 16-bit samples, 25 Hz): half the PPG ring, every estimate the same.
    got = []
    for bits in (16, 18):
        hr = HeartRate(25, 50, ppg_bits=bits)
        assert len(bytes(hr._ppg)) == (2 if bits == 16 else 4) * len(hr._ppg)
        results = []
        run(hr, 40, Wrist(75, 1800, ppg_hz=25, imu_hz=50, dc=50000), results, gap_at=500, gap=7)
        got.append(results)
        assert run(HeartRate(25, 50, ppg_bits=bits), 30, Wrist(75, 1800, ppg_hz=25, imu_hz=50, dc=50000),
                   lock=True) == 12  # and allocates nothing
    assert len(got[0]) == 17 and got[0] == got[1], got
    assert all(abs(r[1] - 750) <= 40 for r in got[0]), got[0]
    ring = HeartRate(50, 50, ppg_bits=16)._ppg
    assert len(bytes(ring)) == 4 * len(ring)  # two samples a slot: their sum needs 17 bits


def test_a_16_bit_ring_saturates_samples_wider_than_the_part_claims():
    hr = HeartRate(25, 0, ppg_bits=16)
    hr.add_ppg(array("I", [70000, 5]), 2, 0)
    hr.add_ppg(array("I", [65535]), 1, 2)
    assert list(hr._ppg[:3]) == [65535, 5, 65535]


def feed(hr, wrist, ppg, acc, ppg_burst=8, acc_burst=16, results=None):
    """Feeds the wrist's PPG from ppg[0] to ppg[1] and its accelerometer from acc[0] to acc[1]
    (stream indices) in bursts of the sizes given, alternating; computes every ready window
    after each burst when `results` is a list (the windows' ends and estimates go there)."""
    ir = array("I", [0] * ppg_burst)
    xyz = array("h", [0] * (3 * acc_burst))
    ip, ia = ppg[0], acc[0]
    while ip < ppg[1] or ia < acc[1]:
        if ip < ppg[1]:
            n = min(ppg_burst, ppg[1] - ip)
            wrist.ppg(ir, ip, n)
            hr.add_ppg(ir, n, ip)
            ip += n
        if ia < acc[1]:
            n = min(acc_burst, acc[1] - ia)
            wrist.acc(xyz, ia, n)
            hr.add_acc(xyz, n, ia)
            ia += n
        while results is not None and hr.compute() >= 0:
            results.append((hr.window_end, hr.bpm_x10))


def test_windows_a_ring_overwrote_before_compute_ran_are_skipped():
    # The rings hold 216 slots: 16 beyond the window. Computing after 30 s of samples (750
    # slots) finds only the last window whole; the estimator then goes on from there.
    for fast in (True, False):
        for imu_rate in (52, 0):
            hr = HeartRate(100, imu_rate, fast=fast)
            wrist = Wrist(80, 0, ppg_hz=100, imu_hz=52, rest_s=100)
            feed(hr, wrist, (0, 3000), (0, 1560 if imu_rate else 0), 32, 16)
            assert hr.ready()
            ends = array("i", [0] * 4)
            n = 0
            gc.collect()
            micropython.heap_lock()  # skipping allocates nothing either
            try:
                while hr.compute() >= 0:
                    ends[n] = hr.window_end
                    n += 1
            finally:
                micropython.heap_unlock()
            assert list(ends[:n]) == [3000], list(ends[:n])  # window [22, 30) s, in slots [550, 750)
            results = [(hr.window_end, hr.bpm_x10)]
            feed(hr, wrist, (3000, 4000), (1560, 2080 if imu_rate else 0), 32, 16, results)
            assert [r[0] for r in results] == [3000, 3200, 3400, 3600, 3800, 4000], results
            assert all(abs(r[1] - 800) <= 20 for r in results), results


def test_a_stream_running_ahead_skips_the_windows_its_ring_overwrote():
    # The PineTime's rates: the accelerometer stalls after 10 s while the PPG goes on to 40 s
    # (1000 slots), then catches up. The PPG ring then holds slots 784..999 only: the windows
    # ending at 300..950 are skipped, not computed from the slots that replaced theirs.
    for fast in (True, False):
        hr = HeartRate(25, 50, ppg_bits=16, fast=fast)
        wrist = Wrist(70, 0, ppg_hz=25, imu_hz=50, dc=50000, rest_s=100)
        results = []
        feed(hr, wrist, (0, 250), (0, 500), results=results)
        feed(hr, wrist, (250, 1000), (500, 500), results=results)
        assert [r[0] for r in results] == [200, 250], results
        feed(hr, wrist, (1000, 1000), (500, 2000), results=results)  # catching up, a window ready at each step
        assert [r[0] for r in results] == [200, 250, 1000], results
        feed(hr, wrist, (1000, 1100), (2000, 2200), results=results)
        assert [r[0] for r in results] == [200, 250, 1000, 1050, 1100], results
        assert all(abs(r[1] - 700) <= 20 for r in results), results


def test_arm_swing_bigger_than_the_pulse_is_not_taken_for_it():
    hr = HeartRate(100, 52)
    results = []
    run(hr, 40, Wrist(72, 1800), results)  # swing at 108 per minute, 3 times the pulse
    for end, bpm_x10, quality in results:
        assert abs(bpm_x10 - 720) <= (40 if end < 1800 else 15), results  # looser while the swing starts
        assert quality > 0


def test_estimator_fits_its_memory_budget():
    # 64-bit size (issue 3f: 4.7 KB; its tables are literals, in flash on a frozen watch)
    # (issue 3k: 4.8 -> 4.0 KB at the PineTime's rates, its 16-bit PPG ring)
    # (issue 3n: 4.5 -> 3.6 KB, 4.0 -> 3.2 KB on the PineTime: rings of 216 slots, viper windows
    # where it reads, no windowed copy)
    for ppg, imu, bits, budget in ((100, 52, 18, 3.75 * 1024), (25, 50, 18, 3.75 * 1024), (25, 50, 16, 3.3 * 1024)):
        gc.collect()
        before = gc.mem_free()
        hr = HeartRate(ppg, imu, ppg_bits=bits)
        gc.collect()
        used = before - gc.mem_free()
        assert used < budget, (ppg, imu, bits, used)
        del hr
