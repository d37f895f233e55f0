"""Sensor drivers, one part per module."""
