"""The USB CDC path of the serial link in MicroPython: SerialRadio over StdioPort (stdin/stdout)
echoes every host write back as a notification; the write "bye" powers it off."""

import time

from watch.radio_serial import SerialRadio, StdioPort

radio = SerialRadio("ECHO", "model", "1.0", port=StdioPort())
radio.start()
while True:
    command = radio.poll_command()
    if command is None:
        time.sleep_ms(1)
        continue
    channel, data = command
    if bytes(data) == b"bye":
        radio.on_power_off()
        break
    radio.notify_control(data, len(data))
