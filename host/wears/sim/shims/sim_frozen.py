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

Each import runs the code in a module context of its own (globals and the code's constants),
as a frozen import allocates one: MicroPython's exec would store the module's dictionary in
the compiled code's context, which the shim holds, so a firmware that drops a module (from
`sys.modules` and its package) could never free its state. The shim copies the context, points
the code's module function at the copy while the body runs (the module's functions keep it)
and back afterwards, checked against the binary's layout first (a function's word 1 is its
context, a context's word 1 its globals); where the layout is not that one, the code runs as
it is (the module then stays).
"""

import builtins
import gc
import sys

try:
    import uctypes
except ImportError:  # not the unix port: the code runs as it is
    uctypes = None

# No more names than these: the names a shim interns at boot decide where the pools of interned
# names grow (wears.sim.heap measures in the same order); the context's copy uses locals only.
_import = builtins.__import__
_code = {}  # per module: its compiled code, the address of the code's module function (0: none to copy)


def _load(name):
    parent, _, child = name.rpartition(".")
    package = _import(parent, None, None, (child,), 0) if parent else None
    module = _import("sim_module")  # a fresh, empty module object for each: its dictionary takes the globals
    del sys.modules["sim_module"]
    g = module.__dict__
    g["__name__"] = name
    sys.modules[name] = module  # before its body runs, as an import does
    code, fun = _code[name]
    if fun:
        n = 8 if sys.maxsize > 1 << 32 else 4  # bytes in a word (little-endian, as every port here)
        context = uctypes.bytearray_at(fun + n, n)  # the function's word that points at its context
        shared = bytes(context)  # holds the code's own context while the function points at the copy
        own = bytearray(uctypes.bytearray_at(int.from_bytes(shared, "little"), 4 * n))  # type, globals, constants
        context[:] = uctypes.addressof(own).to_bytes(n, "little")
    try:
        exec(code, g)
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        if fun:
            context[:] = shared  # pyright: ignore[reportPossiblyUnbound]
            context = shared = own = None  # noqa: F841
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
        code = compile(f.read(), name, "exec")
    fun = 0
    if uctypes:  # the layout _load expects, checked on this function: its word 1 is its context,
        n = 8 if sys.maxsize > 1 << 32 else 4  # whose word 1 is this module's globals; the code's
        mine = [int.from_bytes(uctypes.bytearray_at(id(_compile) + i * n, n), "little") for i in (0, 1)]
        theirs = int.from_bytes(uctypes.bytearray_at(id(code) + n, n), "little")  # word 1: a function like it
        if (int.from_bytes(uctypes.bytearray_at(mine[1] + n, n), "little") == id(globals())
                and int.from_bytes(uctypes.bytearray_at(theirs, n), "little") == mine[0]):
            fun = theirs
    _code[name] = (code, fun)
