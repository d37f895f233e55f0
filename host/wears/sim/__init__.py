"""The virtual watch: the unmodified firmware in the real MicroPython binary, with shims."""
