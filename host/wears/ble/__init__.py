"""BLE access through bleak, and the bleak backend that reaches the virtual watch."""
