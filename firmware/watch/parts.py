"""Sensor parts by the name board profiles give them: which driver module and class."""

# part -> (module, class, whether `read` moves bursts of up to `max_samples` from a FIFO)
_DRIVERS = {
    "MAX30102": ("watch.drivers.max30102", "MAX30102", False),
    "LSM6DS3TR-C": ("watch.drivers.lsm6ds3", "LSM6DS3", True),
    "HRS3300": ("watch.drivers.hrs3300", "HRS3300", False),
    "BMA421": ("watch.drivers.bma421", "BMA421", True),
    "BMI160": ("watch.drivers.bmi160", "BMI160", True),
}


def driver(part, i2c, address, max_samples):
    """A driver for `part` on `i2c`; only that part's module is imported (heap on small watches).
    A part read in bursts reads at most `max_samples` per call and sizes its buffer for that."""
    try:
        module, cls, bursts = _DRIVERS[part]
    except KeyError:
        raise ValueError("no driver for part " + str(part))
    make = getattr(__import__(module, None, None, (cls,)), cls)
    return make(i2c, address, max_samples) if bursts else make(i2c, address)
