"""Shared set-up of firmware tests: a scenario file and a fresh virtual I2C bus holding parts.

    with World(ppg=ppg_of, imu=imu_of, sensors=PINETIME) as w:
        sensor = HRS3300(w.i2c)

`ppg(i)` gives (ir, red) counts of PPG record i, `imu(i)` the six IMU values of record i
(accel x, y, z in mg, gyro x, y, z in 0.1 dps). The scenario file is removed on exit.
"""

import json
import os
import struct

import machine


def still_ppg(i):
    return (110000, 90000)


def still_imu(i):
    return (0, 0, 1000, 0, 0, 0)


def write_scenario(path, ppg_rate, n_ppg, imu_rate, n_imu, ppg=still_ppg, imu=still_imu):
    header = json.dumps({"version": 1, "ppg_rate": ppg_rate, "imu_rate": imu_rate, "n_ppg": n_ppg,
                         "n_imu": n_imu, "ppg_offset": 256, "imu_offset": 256 + 8 * n_ppg, "has_gyro": True,
                         "episodes": [[0, 1, "rest"]], "source": "mp_test", "participant": "T01"})
    rec = bytearray(12)
    with open(path, "wb") as f:
        f.write(header + " " * (255 - len(header)) + "\n")
        for i in range(n_ppg):
            struct.pack_into("<II", rec, 0, *ppg(i))
            f.write(memoryview(rec)[:8])
        for i in range(n_imu):
            struct.pack_into("<hhhhhh", rec, 0, *imu(i))
            f.write(rec)


def temp_path(tag):
    return "%s/wears_mp_%s_%s.wscn" % (os.getenv("TMPDIR") or "/tmp", tag, "".join("%02x" % b for b in os.urandom(4)))


class World:
    """A scenario of `seconds` and a bus with `sensors` ({role: {"part", "address"}};
    default: the board profile's, else MAX30102 and LSM6DS3TR-C). `missing`: roles left off."""

    def __init__(self, seconds=20, ppg_rate=100, imu_rate=52, ppg=still_ppg, imu=still_imu, sensors=None,
                 missing="", error_rate=0.0):
        self.path = temp_path("world")
        write_scenario(self.path, ppg_rate, seconds * ppg_rate, imu_rate, seconds * imu_rate, ppg, imu)
        machine.sim_reset(scenario=self.path, missing=missing, error_rate=error_rate, sensors=sensors)
        self.i2c = machine.I2C(0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            os.remove(self.path)
        except OSError:
            pass
        return False


PINETIME = {"ppg": {"part": "HRS3300", "address": 0x44}, "imu": {"part": "BMA421", "address": 0x18}}
BMI160_BUS = {"ppg": {"part": "MAX30102", "address": 0x57}, "imu": {"part": "BMI160", "address": 0x68}}


def expect_oserror(fn, code=None):
    """fn() raises OSError (with errno `code` when given)."""
    try:
        fn()
    except OSError as e:
        assert code is None or e.args[0] == code, e
        return
    raise AssertionError("no OSError")


def started(part, i2c, buffers, **config):
    """(driver, its sample buffers..., []): `part` on `i2c` initialised with `config`, and a
    list for what the test reads."""
    sensor = part(i2c)
    sensor.init(**config)
    return (sensor,) + tuple(buffers) + ([],)
