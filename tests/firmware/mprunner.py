"""Runs the test_* functions of one module inside MicroPython and prints each outcome."""

import sys
import gc


class Skip(Exception):
    pass


def main(name):
    module = __import__(name)
    for attr in sorted(dir(module)):
        if not attr.startswith("test_"):
            continue
        gc.collect()
        try:
            getattr(module, attr)()
            print("PASS", attr)
        except Skip:
            print("SKIP", attr)
        except BaseException as e:  # noqa: B902 - report everything, keep running
            print("FAIL", attr)
            sys.print_exception(e, sys.stdout)


main(sys.argv[1])
