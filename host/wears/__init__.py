"""WEARS host toolkit: collect, label, train, export and flash wrist emotion models."""

__version__ = "0.1.0"
