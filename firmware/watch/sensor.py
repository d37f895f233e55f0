"""One sensor part and its streams: burst reads, bus-error recovery and sample indices."""

try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

_RETRIES = const(3)  # consecutive bus errors before the part is re-initialised


class Sensor:
    """A driver with the streams it feeds, the buffers its `read` fills and the running index.

    `index` is the stream index of the next sample, counting from the part's first start;
    `tick0` the device time (ms) of index 0, from `clock()`. `config` holds the keyword
    arguments of `driver.init` (rate_hz first of all); `rates` the rates SET_RATE may choose
    (the profile's `rates_hz`; the configured rate alone without them).
    """

    def __init__(self, driver, streams, buffers, config, clock, rates=None):
        self.driver = driver
        self.streams = streams
        self._first, self._second = buffers
        self.config = config
        self.rate = config["rate_hz"]
        self.rates = rates or (self.rate,)
        self._clock = clock
        self.index = 0
        self.tick0 = 0
        self.errors = 0  # bus errors, all told
        self._failures = 0  # consecutive ones

    def start(self):
        """Initialise the part; after a re-initialisation indices go on, so the time origin shifts."""
        self.driver.init(**self.config)
        self.tick0 = self._clock() - self.index * 1000 // self.rate

    def read(self):
        """Burst-read the FIFO; returns how many samples the buffers hold, starting at `index`.

        Samples the FIFO dropped came before the ones read: their indices are skipped, so a
        loss shows as a gap in the stream instead of shifting the timeline. A bus error is
        counted and retried next time; after a few in a row the part is re-initialised.
        """
        driver = self.driver
        lost = driver.lost
        n = 0
        try:
            n = driver.read(self._first, self._second)  # not *self.buffers: a star call allocates
            self._failures = 0
        except OSError:
            self._failed()
        self.index += driver.lost - lost
        return n

    def poll(self):
        """Sample a part without a FIFO when its period is due (the driver's `poll`)."""
        try:
            self.driver.poll()
        except OSError:
            self._failed()

    def _failed(self):
        self.errors += 1
        self._failures += 1
        if self._failures >= _RETRIES:
            self._failures = 0
            try:
                self.start()
            except OSError:
                pass
