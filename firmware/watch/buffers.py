"""Zeroed typed buffers without a temporary list.

`array("h", [0] * n)` first builds a list of n objects (8 bytes each on a 64-bit build, 4 on
a watch), several times the array itself: at boot that transient is what fails to fit, and
what fragments the heap. An array built from a `range` gets its exact size at once (MicroPython
stores each value truncated to the type; CPython refuses values that do not fit, and then
gets the list), and is then cleared.
"""

from array import array


def zeros(typecode, n):
    """array(typecode) of n zeros."""
    try:
        out = array(typecode, range(n))
    except OverflowError:  # CPython, n beyond the type's range
        return array(typecode, [0] * n)
    for i in range(n):
        out[i] = 0
    return out
