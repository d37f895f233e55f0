"""Boot counter and crash log: after repeated crashes the watch boots into safe mode.

Each boot adds one to a counter in flash; a run that stays up for STABLE_MS clears it. More
than SAFE_AFTER boots without a stable run means the firmware keeps crashing (a bad model,
a sensor that hangs the bus): the next boot starts only the radio and logging, so the owner
can still connect, read the crash log's cause in STATUS and upload a model.
"""

import sys

try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

COUNT_PATH = "boots.txt"
CRASH_PATH = "crash.txt"
SAFE_AFTER = const(3)  # crashes in a row before safe mode
STABLE_MS = const(120000)  # up this long: the firmware works, the counter goes back to 0


def begin(path=COUNT_PATH):
    """Count this boot; returns the boots without a stable run, this one included."""
    try:
        with open(path) as f:
            count = int(f.read().strip() or "0")
    except (OSError, ValueError):
        count = 0
    count += 1
    _write(path, count)
    return count


def stable(path=COUNT_PATH):
    _write(path, 0)


def _write(path, count):
    try:
        with open(path, "w") as f:
            f.write(str(count))
    except OSError:
        pass  # a full or read-only filesystem must not stop the boot


def log_crash(exc, path=CRASH_PATH):
    """Keep the traceback of the crash that ends this run (the latest only); print it too."""
    show = getattr(sys, "print_exception", None)  # MicroPython's; CPython has none
    if show:
        show(exc)
    try:
        with open(path, "w") as f:
            if show:
                show(exc, f)
            else:
                f.write(repr(exc))
    except OSError:
        pass


def safe_mode(count):
    return count > SAFE_AFTER
