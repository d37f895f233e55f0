"""Sample indices stay honest: FIFO loss leaves a gap, bus errors are retried then re-initialise."""

from watch.sensor import Sensor


class FakeDriver:
    """Plays a script of read outcomes: (samples lost before the read, samples read) or an OSError."""

    def __init__(self, script):
        self.script = script
        self.lost = 0
        self.inits = 0

    def init(self, rate_hz):
        self.inits += 1

    def read(self, buf, other):
        step = self.script.pop(0)
        if isinstance(step, OSError):
            raise step
        self.lost += step[0]
        return step[1]


def _sensor(script, now=[1000]):
    return Sensor(FakeDriver(script), (1,), (None, None), {"rate_hz": 100}, lambda: now[0])


def test_fifo_overflow_skips_the_lost_indices_so_the_gap_shows():
    s = _sensor([(0, 10), (5, 3)])
    s.start()
    assert s.read() == 10 and s.index == 0
    s.index += 10  # the app, after handing the 10 samples on
    assert s.read() == 3 and s.index == 15, s.index  # samples 10..14 were lost; these are 15..17


def test_bus_errors_are_counted_and_the_third_in_a_row_reinitialises_keeping_the_timeline():
    s = _sensor([OSError(5), OSError(5), OSError(5), (0, 4)])
    s.start()
    s.index = 300  # 3 s of samples at 100 Hz so far
    for _ in range(3):
        assert s.read() == 0
    assert s.errors == 3 and s.driver.inits == 2
    assert s.tick0 == 1000 - 3000  # index 300 is "now": the origin moved back 3 s
    assert s.read() == 4 and s.index == 300


def test_a_failing_reinitialisation_does_not_stop_the_loop():
    class Dead(FakeDriver):
        def init(self, rate_hz):
            raise OSError(19)

    s = Sensor(Dead([OSError(5)] * 4), (1,), (None, None), {"rate_hz": 100}, lambda: 0)
    for _ in range(4):
        assert s.read() == 0
    assert s.errors == 4
