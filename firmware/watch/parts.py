"""Sensor parts by the name board profiles give them: which driver module and class."""

_DRIVERS = {
    "MAX30102": ("watch.drivers.max30102", "MAX30102"),
    "LSM6DS3TR-C": ("watch.drivers.lsm6ds3", "LSM6DS3"),
    "HRS3300": ("watch.drivers.hrs3300", "HRS3300"),
    "BMA421": ("watch.drivers.bma421", "BMA421"),
    "BMI160": ("watch.drivers.bmi160", "BMI160"),
}


def driver(part, i2c, address):
    """A driver for `part` on `i2c`; only that part's module is imported (heap on small watches)."""
    try:
        module, cls = _DRIVERS[part]
    except KeyError:
        raise ValueError("no driver for part " + str(part))
    return getattr(__import__(module, None, None, (cls,)), cls)(i2c, address)
