"""The watch's main loop.

Every period: read the sensor FIFOs in bursts, feed the feature engine, pack the samples
into stream packets, and when a window completes compute its features, run the model and
send the prediction and heart rate. Commands from the host are handled between reads;
queued packets go out as fast as the radio accepts them.
"""

import gc
import os
import struct
import time
from array import array

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

import machine

from watch import blob
from watch.backfill import Backfill
from watch import board as boards
from watch import protocol as P
from watch.drivers.lsm6ds3 import LSM6DS3
from watch.drivers.max30102 import MAX30102
from watch.features import FeatureEngine, spec_for
from watch.flashlog import FlashLog
from watch.model import ModelError, load as load_model
from watch.outbox import Outbox
from watch.radio import Radio
from watch.sensor import Sensor
from watch.upload import ModelUpload

FIRMWARE_REVISION = "0.1.0"
MODEL_PATH = "model.wbl"
KEY_PATH = "key.bin"
STREAMS_PATH = "streams.bin"  # the streams the host asked for: a reboot goes on recording them

_PERIOD_MS = const(100)  # MAX30102's 32-sample FIFO lasts 320 ms at 100 Hz: read 3x as often
_BURST = const(64)  # largest FIFO burst read per sensor and period
_PACKET = const(244)  # largest packet: ATT MTU 247 minus the 3-byte notification header
_INFO_EVERY_MS = const(10000)  # STREAM_INFO and STATUS resent this often
_FLUSH_BUDGET = const(12)  # notifications per period: pacing that keeps the link alive
_LOG_SEGMENT = const(2048)  # flash log segment: about a second of every stream, one write each


class Watch:
    def __init__(self):
        self.board = boards.load()
        self._uptime = 0
        self._last_ticks = time.ticks_ms()
        self.streaming = 0  # mask of streams the host asked for
        self.has_gyro = "gyro_range_dps" in self.board["sensors"].get("imu", {})
        self.radio = Radio(self.board.get("name", "WEARS")[:12], self.board["id"], FIRMWARE_REVISION)
        self.streams = Outbox(24, _PACKET)
        self.replies = Outbox(8, 32)
        self.events = Outbox(8, 48)
        self.preds = Outbox(8, 32)
        # Per stream, the SAMPLES packet being filled: [buffer, count, first index, capacity].
        self.staging = {s: [bytearray(_PACKET), 0, 0, 1] for s in (P.PPG, P.ACC, P.GYRO)}
        self.key = self._read_key()
        self.model_budget = self.board.get("model_budget_bytes", blob.MAX_BYTES)
        self.upload = ModelUpload(MODEL_PATH, max_bytes=self.model_budget)
        self._setup_sensors()
        feats = self.board.get("features", {})
        self.spec_id, self.n_features = spec_for(self.has_gyro)
        self.engine = FeatureEngine(self.ppg_rate, self.imu_rate, feats.get("window_s", 30), feats.get("step_s", 5),
                                    has_gyro=self.has_gyro)
        if self.imu:
            self.engine.set_units(self.imu.driver.accel_unit, self.imu.driver.gyro_unit)
        self.x = array("i", [0] * self.n_features)
        self.proba = bytearray(8)
        self.model = None
        gc.collect()  # the model's node arrays want contiguous blocks
        self._load_model()
        # Every packet on the stream characteristic is also a flash log record (store and forward).
        self.log = FlashLog("log", self.board.get("flash_log_bytes", 262144), _LOG_SEGMENT)
        self.backfill = Backfill(self.log, self.replies)
        self._info = bytearray(32)
        self._next_info = 0
        self.event(P.EV_BOOT, 0)
        if self.log.torn:
            self.event(P.EV_LOG_TORN, self.log.torn)
        self._overflow = self.log.overflow
        self.start_stop(True, self._saved_streams())

    # Set-up -------------------------------------------------------------------------

    def _read_key(self):
        try:
            with open(KEY_PATH, "rb") as f:
                return f.read()
        except OSError:
            return None  # no key provisioned: every upload is refused as unsigned

    def _setup_sensors(self):
        cfg = self.board["sensors"]
        bus = self.board["i2c"]
        self.i2c = machine.I2C(bus["id"], scl=machine.Pin(bus["scl"]), sda=machine.Pin(bus["sda"]), freq=bus["freq"])
        self.ppg_rate = cfg["ppg"]["rate_hz"]
        self.imu_rate = cfg["imu"]["rate_hz"]
        self.ir = array("I", [0] * _BURST)
        self.red = array("I", [0] * _BURST)
        self.acc = array("h", [0] * (3 * _BURST))
        self.gyro = array("h", [0] * (3 * _BURST))
        self.ppg = self._start(MAX30102(self.i2c, cfg["ppg"]["address"]), (P.PPG,), (self.ir, self.red),
                               {"rate_hz": self.ppg_rate})
        imu = cfg["imu"]
        self.imu = self._start(LSM6DS3(self.i2c, imu["address"]), (P.ACC, P.GYRO) if self.has_gyro else (P.ACC,),
                               (self.acc, self.gyro), {"rate_hz": self.imu_rate, "accel_range_g": imu["accel_range_g"],
                                                       "gyro_range_dps": imu.get("gyro_range_dps", 500)})

    def _start(self, driver, streams, buffers, config):
        sensor = Sensor(driver, streams, buffers, config, self.uptime)
        try:
            sensor.start()
        except OSError:
            for s in streams:
                self.event(P.EV_SENSOR_MISSING, s)
            return None
        return sensor

    def _saved_streams(self):
        try:
            with open(STREAMS_PATH, "rb") as f:
                return f.read(1)[0]
        except (OSError, IndexError):
            return 0

    def _load_model(self):
        try:
            os.stat(MODEL_PATH)
        except OSError:
            return
        try:
            self.model = load_model(MODEL_PATH, self.key or b"", self.spec_id, self.n_features, self.model_budget)
            self.event(P.EV_MODEL_LOADED, self.model.model_id)
        except ModelError as e:
            self.event(P.EV_MODEL_REJECTED, e.reason)

    # Time -----------------------------------------------------------------------------

    def uptime(self):
        """Milliseconds since boot without the 2^30 wrap of ticks_ms."""
        now = time.ticks_ms()
        self._uptime += time.ticks_diff(now, self._last_ticks)
        self._last_ticks = now
        return self._uptime

    # Packets --------------------------------------------------------------------------

    def event(self, code, arg):
        box = self.events
        box.seal(P.pack_body(box.open_buf(), P.EVENT, box.next_seq(), self.uptime(), P.EVENT_BODY, code, arg))

    def reply(self, command, seq, status, value=0):
        box = self.replies
        box.seal(P.pack_body(box.open_buf(), P.RESULT, box.next_seq(), self.uptime(), P.RESULT_BODY,
                             command, status, seq, value))

    def status(self):
        flags = (P.STATUS_MODEL_LOADED if self.model else 0) | (P.STATUS_STREAMING if self.streaming else 0)
        try:
            st = os.statvfs(".")
            flash_free = st[0] * st[3]
        except (OSError, AttributeError):
            flash_free = 0
        lost = self.ppg.driver.lost if self.ppg else 0
        bus_errors = sum(s.errors for s in (self.ppg, self.imu) if s)
        dropped = self.streams.dropped + self.events.dropped + self.preds.dropped
        box = self.events
        box.seal(P.pack_body(box.open_buf(), P.STATUS, box.next_seq(), self.uptime(), P.STATUS_BODY,
                             self.battery(), flags, 0, gc.mem_free(), flash_free & 0xFFFFFFFF,
                             self.model.model_id if self.model else 0, lost, bus_errors, dropped))

    def battery(self):
        b = self.board["battery"]
        try:
            uv = machine.ADC(machine.Pin(b["adc_pin"])).read_uv()
        except (AttributeError, OSError, ValueError):
            return 0
        return boards.battery_percent(self.board, int(uv * b["divider"]) // 1000)

    def stream_info(self, sensor, stream):
        driver = sensor.driver
        rate = self.ppg_rate if stream == P.PPG else self.imu_rate
        unit = 1.0 if stream == P.PPG else driver.accel_unit if stream == P.ACC else driver.gyro_unit
        self.send_stream(self._info, P.pack_body(self._info, P.STREAM_INFO, self.log.next_lsn, self.uptime(),
                                                 P.STREAM_INFO_BODY, stream, len(P.CHANNELS[stream]), rate * 1000,
                                                 unit, sensor.tick0))

    def send_stream(self, buf, n):
        """Queue a stream packet (its seq: the low bits of its lsn) and keep it in the flash log."""
        self.log.append(buf, n)
        self.streams.push(buf, n)

    def add_samples(self, stream, values, n, first_index, per_sample):
        """Append n samples (from `values`, `per_sample` ints each) to the stream's open packet."""
        size = P.SAMPLE_SIZES[stream]
        fmt = P.SAMPLE_FORMATS[stream]
        pkt = self.staging[stream]  # [buffer, count, first index, capacity]
        for i in range(n):
            if pkt[1] == 0:
                pkt[2] = first_index + i
                # Sized to the negotiated MTU, so the radio never refuses a packet as too big.
                # Room is left for the BACKFILL wrapping a re-sent record. Unconnected, the
                # samples go to the flash log in full-size packets for the next connection.
                room = min(_PACKET, self.radio.max_payload) if self.radio.connected else _PACKET
                pkt[3] = (room - P.BACKFILL_WRAP - P.HEADER_SIZE - P.SAMPLES_BODY_SIZE) // size
            off = P.HEADER_SIZE + P.SAMPLES_BODY_SIZE + pkt[1] * size
            if per_sample == 2:
                struct.pack_into(fmt, pkt[0], off, values[0][i], values[1][i])
            else:
                j = 3 * i
                struct.pack_into(fmt, pkt[0], off, values[j], values[j + 1], values[j + 2])
            pkt[1] += 1
            if pkt[1] >= pkt[3]:
                self.seal_samples(stream)

    def seal_samples(self, stream):
        pkt = self.staging[stream]
        if pkt[1]:
            self.send_stream(pkt[0], P.pack_samples_header(pkt[0], self.log.next_lsn, self.uptime(), stream,
                                                           pkt[1], pkt[2]))
            pkt[1] = 0

    # The loop ---------------------------------------------------------------------------

    def sample(self):
        ppg, imu = self.ppg, self.imu
        if ppg:
            n = ppg.read()
            if n:
                self.engine.add_ppg(self.ir, n, ppg.index)
                if self.streaming & P.stream_bit(P.PPG):
                    self.add_samples(P.PPG, (self.ir, self.red), n, ppg.index, 2)
                ppg.index += n
        if imu:
            n = imu.read()
            if n:
                self.engine.add_acc(self.acc, n, imu.index)
                if self.has_gyro:
                    self.engine.add_gyro(self.gyro, n, imu.index)
                if self.streaming & P.stream_bit(P.ACC):
                    self.add_samples(P.ACC, self.acc, n, imu.index, 3)
                if self.has_gyro and self.streaming & P.stream_bit(P.GYRO):
                    self.add_samples(P.GYRO, self.gyro, n, imu.index, 3)
                imu.index += n

    def windows(self):
        engine = self.engine
        while engine.ready():
            flags = engine.compute(self.x)
            end = engine.window_end
            now = self.uptime()
            box = self.preds
            box.seal(P.pack_body(box.open_buf(), P.HEART_RATE, box.next_seq(), now, P.HEART_RATE_BODY,
                                 engine.bpm_x10, engine.quality, engine.beats, end))
            self.radio.heart_rate(engine.bpm_x10 // 10, engine.quality > 50, engine.rr_1024, engine.n_rr)
            if self.model:
                m = self.model
                label = m.predict(self.x, self.proba)
                buf = box.open_buf()
                n = P.pack_body(buf, P.PREDICTION, box.next_seq(), now, P.PREDICTION_BODY, end, m.model_id,
                                P.FLAG_LOW_QUALITY if flags else 0, label, m.n_classes)
                for i in range(m.n_classes):
                    buf[n + i] = self.proba[i]
                box.seal(n + m.n_classes)

    def command(self, channel, data):
        if len(data) < P.HEADER_SIZE or data[0] != P.VERSION:
            self.reply(data[1] if len(data) > 1 else 0, 0, P.E_BAD_LENGTH)
            return
        _, ptype, seq, _ = P.unpack_header(data)
        body = len(data) - P.HEADER_SIZE
        try:
            if ptype == P.CMD_MODEL_CHUNK:
                (offset,) = struct.unpack_from(P.CMD_MODEL_CHUNK_BODY, data, P.HEADER_SIZE)
                status = self.upload.chunk(offset, data[P.HEADER_SIZE + 4:])
                if status:  # chunks are acknowledged by the GATT write; only errors are answered
                    self.reply(ptype, seq, status)
            elif ptype == P.CMD_START or ptype == P.CMD_STOP:
                (mask,) = struct.unpack_from(P.CMD_MASK_BODY, data, P.HEADER_SIZE)
                self.start_stop(ptype == P.CMD_START, mask)
                self.reply(ptype, seq, P.OK, self.streaming)
            elif ptype == P.CMD_PING:
                (token,) = struct.unpack_from(P.CMD_PING_BODY, data, P.HEADER_SIZE)
                box = self.replies
                box.seal(P.pack_body(box.open_buf(), P.PONG, box.next_seq(), self.uptime(), P.PONG_BODY, seq, token))
            elif ptype == P.CMD_STATUS:
                self.status()
                self.reply(ptype, seq, P.OK)
            elif ptype == P.CMD_MARK:
                code, arg = struct.unpack_from(P.CMD_MARK_BODY, data, P.HEADER_SIZE)
                self.event(P.EV_MARK, arg)
                self.reply(ptype, seq, P.OK, code)
            elif ptype == P.CMD_MODEL_BEGIN:
                size, crc = struct.unpack_from(P.CMD_MODEL_BEGIN_BODY, data, P.HEADER_SIZE)
                self.reply(ptype, seq, self.upload.begin(size, crc))
            elif ptype == P.CMD_MODEL_COMMIT:
                self.commit_model(seq)
            elif P.CMD_LOG_INFO <= ptype <= P.CMD_ACK:
                self.backfill.command(ptype, seq, data, self.uptime(), self.reply)
            else:
                self.reply(ptype, seq, P.E_UNKNOWN_COMMAND)
        except ValueError:  # struct: the body is shorter than its layout
            self.reply(ptype, seq, P.E_BAD_LENGTH, body)

    def commit_model(self, seq):
        status, model = self.upload.commit(self.key or b"", self.spec_id, self.n_features)
        if status == P.OK:
            self.model = model
            gc.collect()
            self.event(P.EV_MODEL_LOADED, model.model_id)
            self.reply(P.CMD_MODEL_COMMIT, seq, P.OK, model.model_id)
        else:
            self.event(P.EV_MODEL_REJECTED, status)
            self.reply(P.CMD_MODEL_COMMIT, seq, status)

    def start_stop(self, start, mask):
        before = self.streaming
        for sensor in (self.ppg, self.imu):
            if not sensor:
                continue
            for stream in sensor.streams:
                bit = P.stream_bit(stream)
                if not mask & bit:
                    continue
                if start and not self.streaming & bit:
                    self.streaming |= bit
                    self.stream_info(sensor, stream)
                elif not start and self.streaming & bit:
                    self.seal_samples(stream)
                    self.streaming &= ~bit
        if self.streaming != before:
            with open(STREAMS_PATH, "wb") as f:
                f.write(bytes((self.streaming,)))

    def periodic(self):
        now = self.uptime()
        if time.ticks_diff(now, self._next_info) < 0:
            return
        self._next_info = now + _INFO_EVERY_MS
        for sensor in (self.ppg, self.imu):
            if sensor:
                for stream in sensor.streams:
                    if self.streaming & P.stream_bit(stream):
                        self.stream_info(sensor, stream)
        self.radio.battery(self.battery())
        if self.log.overflow != self._overflow:
            self._overflow = self.log.overflow
            self.event(P.EV_LOG_OVERFLOW, self._overflow)

    def flush(self):
        radio = self.radio
        if not radio.connected:
            return
        budget = _FLUSH_BUDGET
        budget -= self.replies.flush(radio.notify_control, budget)
        budget -= self.events.flush(radio.notify_event, budget)
        budget -= self.preds.flush(radio.notify_prediction, budget)
        budget -= self.streams.flush(radio.notify_stream, budget)
        self.backfill.flush(radio.notify_control, budget, self.uptime(), radio.max_payload)

    def step(self):
        # Commands first: a PING is answered with the clock as the loop woke, not after the
        # sensor work, which keeps the host's clock fit tight.
        while True:
            cmd = self.radio.poll_command()
            if cmd is None:
                break
            self.command(cmd[0], cmd[1])
        self.sample()
        self.windows()
        self.periodic()
        self.flush()

    def run(self):
        self.radio.start()
        gc.collect()
        try:
            while True:
                start = time.ticks_ms()
                self.step()
                left = _PERIOD_MS - time.ticks_diff(time.ticks_ms(), start)
                if left > 0:
                    time.sleep_ms(left)
        finally:
            self.log.close()
            self.radio.on_power_off()


def main():
    Watch().run()
