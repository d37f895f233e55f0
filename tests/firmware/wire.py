"""Firmware modules as the host sees them, inside MicroPython.

On a watch the names only the host reads are `_` constants of watch.protocol and
watch.blob, folded into the code and kept out of their dictionaries (CPython gets them as
public names); here their values come from the modules' sources, so the tests use the same
numbers and layouts.
"""

import os


class _HostView:
    pass


def host_view(name):
    """watch.<name> with its `_X = const(...)` constants also as X."""
    module = __import__("watch." + name, None, None, ["_"])
    view = _HostView()
    for key in dir(module):
        setattr(view, key, getattr(module, key))
    with open(os.getenv("WEARS_REPO") + "/firmware/watch/" + name + ".py") as f:
        for line in f:
            if line.startswith("_") and " = const(" in line:
                key, _, rest = line.partition(" = const(")
                setattr(view, key[1:], eval(rest[:rest.index(")")]))
    return view


protocol = host_view("protocol")
blob = host_view("blob")
