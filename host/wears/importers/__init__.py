"""Importers: recordings made elsewhere, stored in the study database like a watch's own."""

from .e4 import import_e4

__all__ = ["import_e4"]
