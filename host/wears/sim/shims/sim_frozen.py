"""Frozen modules imported after boot, as a frozen image has them (not MicroPython API).

Frozen into a watch's image, a module's bytecode, constants and names are in flash; importing
it makes only its RAM state: the module, its dictionary, its functions and classes, what its
body builds. The virtual watch loads `.mpy` files instead, which puts the bytecode and the
module's names (a new qstr pool, 14 KB on the 64-bit binary when it has to double) in the
heap at the moment of the import. For the modules a frozen board imports after boot (the
model's, the upload's, the baseline's: `WEARS_SIM_FROZEN`, "name=source" pairs from
wears.sim.heap.late_modules), `install` compiles them at boot, before the firmware, where the
shims' blocks sit (wears.sim.heap credits what the compiled code holds), and hooks `__import__`
so that the firmware's import only executes that code into a fresh module: the RAM state a
frozen import makes, at the moment it makes it.
"""

import builtins
import gc
import sys

_import = builtins.__import__
_code = {}


def _load(name):
    parent, _, child = name.rpartition(".")
    package = _import(parent, None, None, (child,), 0) if parent else None
    module = _import("sim_module")  # a fresh, empty module object for each: its dictionary takes the globals
    del sys.modules["sim_module"]
    g = module.__dict__
    g["__name__"] = name
    sys.modules[name] = module  # before its body runs, as an import does
    try:
        exec(_code[name], g)
    except BaseException:
        del sys.modules[name]
        raise
    if package is not None:
        setattr(package, child, module)


def _frozen_import(name, globals=None, locals=None, fromlist=None, level=0):
    if level == 0:
        if name in _code and name not in sys.modules:
            _load(name)
        if fromlist and fromlist is not True:
            for item in fromlist:
                full = name + "." + item
                if full in _code and full not in sys.modules:
                    _load(full)
    return _import(name, globals, locals, fromlist, level)


def install(spec):
    """Compile the modules of `spec` ("name=source,name=source") and route their imports here."""
    for pair in spec.split(","):
        _compile(*pair.split("="))
        gc.collect()  # each module's parse tree goes before the next one's
    builtins.__import__ = _frozen_import


def _compile(name, path):
    with open(path) as f:
        _code[name] = compile(f.read(), name, "exec")
