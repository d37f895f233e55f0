"""A synthetic wrist for the firmware tests, generated in integers so it runs while the heap is locked."""


class Stream:
    """A 75 bpm pulse (inverted IR counts, +-2 sample jitter) and a moving wrist, in integers only,
    so it can be generated while the heap is locked."""

    def __init__(self, seed):
        self.seed = seed
        self.phase = 0
        self.period = 80
        self.t = 0  # IMU samples made

    def rand(self):
        self.seed = (self.seed * 25173 + 13849) & 0xFFFF
        return self.seed

    def ppg(self, buf, n):
        for i in range(n):
            ph = self.phase
            shape = ph * 90 if ph < 10 else 900 - (ph - 10) * 20 if ph < 55 else 0
            buf[i] = 110000 - shape + (self.rand() & 31) - 16
            self.phase += 1
            if self.phase >= self.period:
                self.phase = 0
                self.period = 78 + (self.rand() & 3)
        return n

    def imu(self, acc, gyro, n):
        for i in range(n):
            tri = (self.t % 52) * 150 - 3900  # a 1 Hz triangle, +-0.5 g
            acc[3 * i] = tri + (self.rand() & 63) - 32
            acc[3 * i + 1] = (self.rand() & 127) - 64
            acc[3 * i + 2] = 8192 + (tri >> 1)
            gyro[3 * i] = tri >> 2
            gyro[3 * i + 1] = (self.rand() & 255) - 128
            gyro[3 * i + 2] = -300
            self.t += 1
        return n
