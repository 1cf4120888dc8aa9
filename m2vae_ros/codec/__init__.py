"""Sensor message ↔ tensor conversions shared by the dataset builder and the live node."""
