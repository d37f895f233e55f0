"""What every sensor driver shares: a part with 8-bit registers at an address on an I2C bus."""


class Registers:
    """One-register reads and writes through a preallocated byte (nothing allocated)."""

    def __init__(self, i2c, address):
        self._i2c = i2c
        self._address = address
        self._one = bytearray(1)

    def _write(self, reg, value):
        self._one[0] = value
        self._i2c.writeto_mem(self._address, reg, self._one)

    def _read_reg(self, reg):
        self._i2c.readfrom_mem_into(self._address, reg, self._one)
        return self._one[0]
