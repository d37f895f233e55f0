"""A tiny peripheral on watch.radio for the virtual BLE tests (run by VirtualWatch(main=...)).

Echoes every host write on the control characteristic as [channel] + the written bytes,
streams a counter packet (u32 counter, u32 tick) every 100 ms of virtual time, notifies a
heart rate of 72 bpm with two RR intervals every second, and after VW_ECHO_SECONDS virtual
seconds says goodbye and exits (or just exits when VW_ECHO_GOODBYE=0).
"""

import gc
import os
import struct
import sys
import time
from array import array

from watch.radio import Radio


def main():
    seconds = int(os.getenv("VW_ECHO_SECONDS") or "60")
    radio = Radio(os.getenv("WEARS_SIM_NAME") or "WEARS-VW01", "vw-echo", "0.0.1")
    radio.start()
    radio.battery(87)
    counter = bytearray(8)
    reply = bytearray(1 + 244)
    rr = array("H", (819, 840))
    gc.collect()
    print("heap_free", gc.mem_free())
    sent = 0
    replying = 0
    next_stream = 0
    next_hr = 0
    end = seconds * 1000
    while time.ticks_ms() < end:
        now = time.ticks_ms()
        if not replying:
            cmd = radio.poll_command()
            if cmd is not None:
                channel, data = cmd
                reply[0] = channel
                reply[1:1 + len(data)] = data
                replying = 1 + len(data)
        if replying and radio.notify_control(reply, replying):
            replying = 0
        if radio.connected and time.ticks_diff(now, next_stream) >= 0:
            struct.pack_into("<II", counter, 0, sent, now)
            if radio.notify_stream(counter, 8):
                sent += 1
                next_stream = now + 100
        if radio.connected and time.ticks_diff(now, next_hr) >= 0:
            radio.heart_rate(72, True, rr, 2)
            next_hr = now + 1000
        time.sleep_ms(10)
    if os.getenv("VW_ECHO_GOODBYE") != "0":
        radio.on_power_off()
    print("sent", sent)
    sys.exit(0)


main()
