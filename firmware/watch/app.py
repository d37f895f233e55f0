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
from watch.buffers import zeros

try:
    from micropython import const
except ImportError:
    const = lambda x: x  # noqa: E731 (a def would clash with the stubs' signature)

import machine

from watch.backfill import Backfill
from watch import board as boards
from watch import boot
from watch import parts
from watch import protocol as P
from watch.auth import Auth
from watch.features import FeatureEngine, spec_for
from watch.flashlog import FlashLog
from watch.heart_rate import HeartRate
from watch.outbox import Outbox
from watch.radio_gatt import CONTROL
from watch.sensor import Sensor
from watch.slots import ModelSlots
from watch.watchdog import Watchdog

_FIRMWARE_REVISION = const("0.1.0")
_MODEL_PATH = const("model.wbl")
# What only a model's load runs (the checks, the parsing, the version-1 conversion): dropped
# after each load, at boot and at a commit (the runtime, watch.model or watch.mlp, stays).
_LOAD_MODULES = ("loader", "blob", "trees_v1")
_KEY_PATH = const("key.bin")
_STREAMS_PATH = const("streams.bin")  # the streams the host asked for: a reboot goes on recording them

_PERIOD_MS = const(100)  # MAX30102's 32-sample FIFO lasts 320 ms at 100 Hz: read 3x as often
_BURST = const(32)  # largest FIFO burst read per sensor and period (the rest waits in the FIFO)
_CATCH_UP = const(3)  # a period's read takes up to this many periods of samples at the part's top rate
_PACKET = const(244)  # largest packet: ATT MTU 247 minus the 3-byte notification header
_EVENT_SLOT = const(44)  # the largest packet on the event characteristic: STATUS, header 8 + body 36
_INFO_EVERY_MS = const(10000)  # STREAM_INFO and STATUS resent this often
_FLUSH_BUDGET = const(12)  # notifications per period: pacing that keeps the link alive
_STATUS_EVERY_MS = const(60000)  # STATUS (heap, counters) unasked this often while connected
_INIT_TRIES = const(5)  # a part's set-up, retried when the bus errs (EIO) rather than finds nobody
_ENODEV = const(19)
_WATCHDOG_MS = const(8000)  # a loop stuck this long resets the watch (profile: watchdog_ms)
_LOG_SEGMENT = const(2048)  # flash log segment: about a second of every stream, one write each


class Watch:
    def __init__(self, boots=1):
        # The profile's parsed dict goes after boot: the run keeps the few settings it reads.
        board = boards.load()
        self.battery_cfg = board.get("battery")
        self.features_cfg = board.get("features", {})  # window settings for a model without its own
        self._model_max = board.get("model_budget_bytes")
        self._watchdog_ms = board.get("watchdog_ms", _WATCHDOG_MS)
        self.boots = boots
        self.safe = boot.safe_mode(boots)
        self._uptime = 0
        self._last_ticks = time.ticks_ms()
        self.streaming = 0  # mask of streams the host asked for
        self.radio = self._radio(board)
        gc.collect()  # its module's loading garbage, before the buffers below
        # Stream packets wait for the radio on flash, in the flash log's sealed segments
        # (FlashLog.send_live); replies and predictions here (a small watch holds fewer).
        slots = board.get("outbox_slots", 8)
        self.replies = Outbox(slots, 32)
        self.events = Outbox(8, _EVENT_SLOT)  # a boot's events wait here for the first connection
        self.preds = Outbox(slots, 32)
        self.key = self._read_key()
        self.auth = Auth(self.key)
        # The model's code (watch.model, watch.loader, watch.blob, watch.upload, watch.baseline)
        # is imported when a model is there or an upload begins: a small watch keeps that heap
        # until then, and the loader's only while a model loads (_LOAD_MODULES).
        self.slots = ModelSlots(_MODEL_PATH)
        self.upload = None  # watch.upload.ModelUpload from the first MODEL_BEGIN
        self.event(P.EV_BOOT, 0)
        if boots > 1:
            self.event(P.EV_CRASHED, boots - 1)
        imu = board["sensors"].get("imu")
        self.has_gyro = bool(imu) and "gyro_range_dps" in imu
        # Per stream the board has (PPG, ACC, GYRO: 1, 2, 3), the SAMPLES packet being filled:
        # its buffer in staging[stream - 1], and count, first index, capacity at fill[3 * (stream - 1):].
        n = 3 if self.has_gyro else 2
        self.staging = tuple(bytearray(_PACKET) for _ in range(n))
        self.fill = zeros("I", 3 * n)
        self.spec_id, self.n_features = spec_for(self.has_gyro)
        self.ppg = self.imu = self.engine = self.hr = self.model = None
        self.ppg_rate = self.imu_rate = 0
        # Window settings: the loaded model's when its blob has them, else the board profile's.
        feats = self.features_cfg
        self.window_s = feats.get("window_s", 30)
        self.step_s = feats.get("step_s", 5)
        self.x = zeros("i", self.n_features)
        # A model may expect features minus the wearer's baseline (spec 9 / 10): it predicts after
        # a calibration phase of baseline_windows trusted windows (docs/features.md).
        self.specs = (self.spec_id, spec_for(self.has_gyro, True)[0])
        self.baseline = None
        self.proba = bytearray(8)
        if self.safe:
            self.event(P.EV_SAFE_MODE, boots)  # radio and logging only: no sensors, no model run
            if self.slots.safe():  # and the previous model when the latest was still on trial
                self.event(P.EV_MODEL_ROLLBACK, 0)
        else:
            self._setup_sensors(board)
            self._new_engine()
            gc.collect()  # the model's node arrays want contiguous blocks
            self._load_model()
        self._next_info = 0
        self._next_status = _STATUS_EVERY_MS
        self._stable = False
        # Every packet on the stream characteristic is also a flash log record (store and forward).
        self.log = FlashLog("log", board.get("flash_log_bytes", 262144), board.get("log_segment_bytes", _LOG_SEGMENT))
        self.backfill = Backfill(self.log, self.replies)
        self._info = bytearray(32)
        if self.log.torn:
            self.event(P.EV_LOG_TORN, self.log.torn)
        self._overflow = self.log.overflow
        if not self.safe:
            self.start_stop(True, self._saved_streams())

    # Set-up -------------------------------------------------------------------------

    def _radio(self, board):
        """BLE, or the USB serial link when board.json says `"link": "serial"` (docs/protocol.md)."""
        name = board.get("name", "WEARS")[:12]
        if board.get("link") == "serial":
            from watch.radio_serial import SerialRadio
            return SerialRadio(name, board["id"], _FIRMWARE_REVISION, board)
        if board.get("radio") == "ubluepy":
            from watch.radio_ubluepy import Radio
        else:
            from watch.radio import Radio
        return Radio(name, board["id"], _FIRMWARE_REVISION)

    def _read_key(self):
        try:
            with open(_KEY_PATH, "rb") as f:
                return f.read()
        except OSError:
            return None  # no key provisioned: every upload is refused as unsigned

    def _setup_sensors(self, board):
        cfg = board["sensors"]
        bus = board.get("i2c")
        buses = {}
        ppg = cfg.get("ppg")
        imu = cfg.get("imu")
        if ppg:
            self.ppg_rate = ppg["rate_hz"]
            n = _burst(ppg)
            self.ir = zeros("I", n)
            self.red = zeros("I", n)
            self.ppg = self._start(ppg, buses, bus, (P.PPG,), (self.ir, self.red), {"rate_hz": self.ppg_rate})
        if imu:
            self.imu_rate = imu["rate_hz"]
            n = _burst(imu)
            self.acc = zeros("h", 3 * n)
            self.gyro = zeros("h", 3 * n) if self.has_gyro else self.acc
            config = {"rate_hz": self.imu_rate, "accel_range_g": imu["accel_range_g"]}
            if self.has_gyro:
                config["gyro_range_dps"] = imu["gyro_range_dps"]
            self.imu = self._start(imu, buses, bus, (P.ACC, P.GYRO) if self.has_gyro else (P.ACC,), (self.acc, self.gyro),
                                   config)

    def _bus(self, sensor_cfg, buses, default):
        bus = sensor_cfg.get("i2c") or default
        i2c = buses.get(bus["id"])
        if i2c is None:
            power = sensor_cfg.get("power_pin")
            if power is not None:  # a part powered from a GPIO (the XIAO Sense's IMU)
                machine.Pin(power, machine.Pin.OUT, value=1)
            i2c = machine.I2C(bus["id"], scl=machine.Pin(bus["scl"]), sda=machine.Pin(bus["sda"]), freq=bus["freq"])
            buses[bus["id"]] = i2c
        return i2c

    def _start(self, cfg, buses, bus, streams, buffers, config):
        """The part of `cfg` as a started Sensor; None (and a clear event per stream) when it
        does not answer at boot: the other streams keep working without it."""
        for _ in range(_INIT_TRIES):
            try:
                sensor = Sensor(parts.driver(cfg["part"], self._bus(cfg, buses, bus), cfg["address"], _burst(cfg)),
                                streams, buffers, config, self.uptime, cfg.get("rates_hz"))
                sensor.start()
                return sensor
            except OSError as e:
                if e.args and e.args[0] == _ENODEV:
                    break  # nobody answers at that address: missing, not disturbed
            except ValueError:
                break  # the profile asks for what the part cannot do
        for s in streams:
            self.event(P.EV_SENSOR_MISSING, s)
        return None

    def _new_engine(self):
        """The feature engine and the heart-rate estimator for the current rates; on PPG alone
        when the IMU is missing (no accelerometer: no motion gate)."""
        self.engine = self.hr = None
        if not self.ppg:
            return  # no PPG, no windows: heart rate and every model need it
        gc.collect()
        imu = self.imu
        self.engine = FeatureEngine(self.ppg_rate, self.imu_rate or 25, self.window_s, self.step_s,
                                    has_gyro=self.has_gyro, has_imu=imu is not None)
        if imu:
            self.engine.set_units(imu.driver.accel_unit, imu.driver.gyro_unit)
        self.hr = HeartRate(self.ppg_rate, self.imu_rate if imu else 0, imu.driver.accel_unit if imu else 0,
                            ppg_bits=getattr(self.ppg.driver, "ppg_bits", 18))
        self._fit_baseline()

    def _fit_baseline(self):
        """A fresh calibration for a model on baseline-subtracted features (spec 9 / 10); None
        for any other model or none (watch.baseline is imported only when needed)."""
        m = self.model
        self.baseline = None
        if m is None:
            return
        # a version-1 blob says nothing (0): the board profile's calibration length then
        windows = getattr(m, "baseline_windows", 0) or self.features_cfg.get("baseline_windows", 12)
        if self.engine is not None and m.feature_spec != self.spec_id and windows:
            from watch.baseline import Baseline

            self.baseline = Baseline(self.engine.names, windows)

    def _engine_for(self, model):
        """OK once the feature engine runs on `model`'s window settings (its blob's `window_s`
        and `step_s`; the board profile's where it has none); E_WINDOW_UNSUPPORTED when this
        watch cannot hold that window (no heap for it, or out of the engine's range): the
        engine then runs on the settings it had."""
        feats = self.features_cfg
        window = getattr(model, "window_s", None) or feats.get("window_s", 30)
        step = getattr(model, "step_s", None) or feats.get("step_s", 5)
        if window == self.window_s and step == self.step_s and (self.engine is not None or not self.ppg):
            return P.OK  # (an engine dropped for the model's upload is built again below)
        old = self.window_s, self.step_s
        self.window_s, self.step_s = window, step
        try:
            self._new_engine()  # drops the running engine first: the heap may not hold two
        except (MemoryError, ValueError):
            self.window_s, self.step_s = old
            self.engine = self.hr = None
            try:
                self._new_engine()
            except MemoryError:  # the heap, split up by the attempt, no longer holds the old one either:
                self.engine = self.hr = None  # no windows until the next boot places it afresh
            return P.E_WINDOW_UNSUPPORTED
        return P.OK

    def _model_budget(self):
        budget = self._model_max
        if budget is None:
            from watch import blob

            budget = blob.MAX_BYTES
        return budget

    def _load(self, path):
        """The model in `path`; raises OSError when there is none (without importing the model's code)."""
        os.stat(path)
        try:
            from watch.loader import ModelError, load

            model = load(path, self.key or b"", self.specs, self.n_features, self._model_budget())
            status = self._engine_for(model)
            if status:
                model.close()
                raise ModelError(status)
            return model
        finally:
            _forget(_LOAD_MODULES)  # a loaded model needs only its runtime

    def streams_present(self):
        mask = 0
        for sensor in (self.ppg, self.imu):
            if sensor:
                for stream in sensor.streams:
                    mask |= P.stream_bit(stream)
        return mask

    def _saved_streams(self):
        try:
            with open(_STREAMS_PATH, "rb") as f:
                return f.read(1)[0]
        except (OSError, IndexError):
            return 0

    def _load_model(self):
        # The active slot; a new model that fails its first boot is rolled back (watch.slots).
        model, rolled_back, reason = self.slots.boot(self._load)
        if rolled_back:
            self.event(P.EV_MODEL_ROLLBACK, reason)
        if model:
            self.model = model
            self._fit_baseline()
            self.event(P.EV_MODEL_LOADED, model.model_id)
        elif reason:
            self.event(P.EV_MODEL_REJECTED, reason)

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
        flags = ((P.STATUS_MODEL_LOADED if self.model else 0) | (P.STATUS_STREAMING if self.streaming else 0)
                 | (P.STATUS_SAFE_MODE if self.safe else 0)
                 | (P.STATUS_AUTHENTICATED if self.auth.trusted(self.radio.link) else 0))
        try:
            st = os.statvfs(".")
            flash_free = st[0] * st[3]
        except (OSError, AttributeError):
            flash_free = 0
        ppg_lost = self.ppg.driver.lost if self.ppg else 0
        imu_lost = self.imu.driver.lost if self.imu else 0
        bus_errors = (self.ppg.errors if self.ppg else 0) + (self.imu.errors if self.imu else 0)
        dropped = self.log.live_dropped + self.events.dropped + self.preds.dropped
        gc.collect()  # free heap as live objects leave it, not as garbage happens to lie
        box = self.events
        box.seal(P.pack_body(box.open_buf(), P.STATUS, box.next_seq(), self.uptime(), P.STATUS_BODY,
                             self.battery(), flags, 0, gc.mem_free(), flash_free & 0xFFFFFFFF,
                             self.model.model_id if self.model else 0, ppg_lost & 0xFFFFFFFF, bus_errors & 0xFFFFFFFF,
                             dropped & 0xFFFFFFFF, imu_lost & 0xFFFFFFFF, min(self.boots, 0xFFFF),
                             self.streams_present(), self.auth.failures))

    def battery(self):
        try:
            return boards.battery_percent(self.battery_cfg, boards.battery_mv(self.battery_cfg))
        except (AttributeError, OSError, ValueError):
            return 0

    def stream_info(self, sensor, stream):
        driver = sensor.driver
        rate = self.ppg_rate if stream == P.PPG else self.imu_rate
        unit = 1.0 if stream == P.PPG else driver.accel_unit if stream == P.ACC else driver.gyro_unit
        channels = 2 if stream == P.PPG else 3  # PPG: ir, red; IMU: x, y, z (protocol.CHANNELS on the host)
        self.send_stream(self._info, P.pack_body(self._info, P.STREAM_INFO, self.log.next_lsn, self.uptime(),
                                                 P.STREAM_INFO_BODY, stream, channels, rate * 1000, unit, sensor.tick0))

    def send_stream(self, buf, n):
        """Keep a stream packet in the flash log (its seq: the low bits of its lsn), whose open
        segment is its queue for the radio."""
        self.log.append(buf, n)

    def add_samples(self, stream, values, second, n, first_index):
        """Append n samples to the stream's open packet: from `values` and `second` (PPG: IR
        and red), or x y z interleaved in `values` (`second` None). Allocates nothing."""
        size = P.SAMPLE_SIZES[stream]
        fmt = P.SAMPLE_FORMATS[stream]
        buf = self.staging[stream - 1]
        fill = self.fill
        k = 3 * (stream - 1)  # fill[k]: count, fill[k + 1]: first index, fill[k + 2]: capacity
        for i in range(n):
            if fill[k] == 0:
                fill[k + 1] = first_index + i
                # Sized to the negotiated MTU, so the radio never refuses a packet as too big.
                # Room is left for the BACKFILL wrapping a re-sent record. Unconnected, the
                # samples go to the flash log in full-size packets for the next connection.
                room = min(_PACKET, self.radio.max_payload) if self.radio.connected else _PACKET
                fill[k + 2] = (room - P.BACKFILL_WRAP - P.HEADER_SIZE - P.SAMPLES_BODY_SIZE) // size
            off = P.HEADER_SIZE + P.SAMPLES_BODY_SIZE + fill[k] * size
            if second is not None:
                struct.pack_into(fmt, buf, off, values[i], second[i])
            else:
                j = 3 * i
                struct.pack_into(fmt, buf, off, values[j], values[j + 1], values[j + 2])
            fill[k] += 1
            if fill[k] >= fill[k + 2]:
                self.seal_samples(stream)

    def seal_samples(self, stream):
        k = 3 * (stream - 1)
        count = self.fill[k]
        if count:
            buf = self.staging[stream - 1]
            self.send_stream(buf, P.pack_samples_header(buf, self.log.next_lsn, self.uptime(), stream, count,
                                                        self.fill[k + 1]))
            self.fill[k] = 0

    # The loop ---------------------------------------------------------------------------

    def sample(self):
        ppg, imu, engine = self.ppg, self.imu, self.engine  # (a 4-tuple would allocate)
        hr = self.hr
        if ppg and engine and hr:
            n = ppg.read()
            if n:
                engine.add_ppg(self.ir, n, ppg.index)
                hr.add_ppg(self.ir, n, ppg.index)
                if self.streaming & P.stream_bit(P.PPG):
                    self.add_samples(P.PPG, self.ir, self.red, n, ppg.index)
                ppg.index += n
        if imu:
            n = imu.read()
            if n:
                if engine and hr:
                    engine.add_acc(self.acc, n, imu.index)
                    hr.add_acc(self.acc, n, imu.index)
                    if self.has_gyro:
                        engine.add_gyro(self.gyro, n, imu.index)
                if self.streaming & P.stream_bit(P.ACC):
                    self.add_samples(P.ACC, self.acc, None, n, imu.index)
                if self.has_gyro and self.streaming & P.stream_bit(P.GYRO):
                    self.add_samples(P.GYRO, self.gyro, None, n, imu.index)
                imu.index += n

    def windows(self):
        hr = self.hr
        engine = self.engine
        baseline = self.baseline
        if engine is None or hr is None:
            return  # no PPG: neither heart rate nor windows
        box = self.preds
        while hr.compute() >= 0:  # every 2 s: the motion-robust heart rate of the last 8 s
            box.seal(P.pack_heart_rate(box.open_buf(), box.next_seq(), self.uptime(), hr.bpm_x10, hr.quality,
                                       hr.beats(), hr.window_end))
        while engine.ready():
            flags = engine.compute(self.x)
            end = engine.window_end
            now = self.uptime()
            # the standard Heart Rate notification goes out with the next flush
            self.radio.heart_rate_add(hr.bpm_x10 // 10, hr.quality > 0, engine.rr_1024, engine.n_rr)
            m = self.model
            if m and baseline:  # a model on baseline-subtracted features
                if not baseline.ready():
                    baseline.add(self.x, flags)  # calibration phase: no prediction yet
                    continue
                baseline.apply(self.x)
            if m:
                label = m.predict(self.x, self.proba)
                if label < 0:  # its file no longer holds the model load checked: on without it
                    m.close()
                    self.model = self.baseline = None
                    self.event(P.EV_MODEL_REJECTED, -label)
                    continue
                buf = box.open_buf()
                n = P.pack_prediction(buf, box.next_seq(), now, end, m.model_id,
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
        if (channel != CONTROL or ptype not in P.OPEN_COMMANDS) and not self.auth.trusted(self.radio.link):
            self.reply(ptype, seq, P.E_NOT_AUTHENTICATED)
            return
        try:
            if ptype == P.CMD_MODEL_CHUNK:
                (offset,) = struct.unpack_from(P.CMD_MODEL_CHUNK_BODY, data, P.HEADER_SIZE)
                status = self.upload.chunk(offset, data[P.HEADER_SIZE + 4:]) if self.upload else P.E_NO_UPLOAD
                if status:  # chunks are acknowledged by the GATT write; only errors are answered
                    self.reply(ptype, seq, status, self.upload.received if self.upload else 0)
            elif ptype == P.CMD_MODEL_CHUNK_CRC:
                offset, crc = struct.unpack_from(P.CMD_MODEL_CHUNK_CRC_BODY, data, P.HEADER_SIZE)
                status = self.upload.chunk(offset, data[P.HEADER_SIZE + P.CMD_MODEL_CHUNK_CRC_SIZE:], crc) if self.upload else P.E_NO_UPLOAD
                if status:
                    self.reply(ptype, seq, status, self.upload.received if self.upload else 0)
            elif ptype == P.CMD_MODEL_RESUME:
                size, crc = struct.unpack_from(P.CMD_MODEL_RESUME_BODY, data, P.HEADER_SIZE)
                status, received = self._uploader().resume(size, crc)
                self.reply(ptype, seq, status, received)
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
                self.reply(ptype, seq, self._uploader().begin(size, crc))
            elif ptype == P.CMD_MODEL_COMMIT:
                self.commit_model(seq)
            elif ptype == P.CMD_AUTH_BEGIN:
                box = self.replies
                buf = box.open_buf()
                n = P.pack_body(buf, P.AUTH_CHALLENGE, box.next_seq(), self.uptime(), P.AUTH_CHALLENGE_BODY, seq)
                buf[n:n + P.NONCE_SIZE] = self.auth.challenge(self.radio.link)
                box.seal(n + P.NONCE_SIZE)
            elif ptype == P.CMD_AUTH_PROOF:
                if body != 2 * P.NONCE_SIZE:
                    raise ValueError
                h = P.HEADER_SIZE
                if self.auth.prove(self.radio.link, data[h:h + P.NONCE_SIZE], data[h + P.NONCE_SIZE:]):
                    self.reply(ptype, seq, P.OK)
                else:
                    self.event(P.EV_AUTH_FAILED, self.auth.failures)
                    self.reply(ptype, seq, P.E_AUTH_FAILED)
            elif ptype == P.CMD_SET_RATE:
                stream, rate = struct.unpack_from(P.CMD_SET_RATE_BODY, data, P.HEADER_SIZE)
                self.reply(ptype, seq, self.set_rate(stream, rate), rate)
            elif P.CMD_LOG_INFO <= ptype <= P.CMD_ACK:
                self.backfill.command(ptype, seq, data, self.uptime(), self.reply)
            else:
                self.reply(ptype, seq, P.E_UNKNOWN_COMMAND)
        except ValueError:  # struct: the body is shorter than its layout
            self.reply(ptype, seq, P.E_BAD_LENGTH, body)

    def commit_model(self, seq):
        # The running model (its file closed first), the feature engine and the heart-rate
        # estimator go first; the engine and the estimator are built again for the new blob's
        # window settings (from its header) before the blob is checked and its model loaded:
        # their buffers are the largest blocks, and a loaded model is small (its trees or
        # weights stay in its file, watch.model): this order needs the least heap. On a
        # refusal the running model is loaded again from its slot, and the engine follows its
        # window settings (the board profile's without a model).
        if self.model:
            self.model.close()
        self.model = self.engine = self.hr = None
        gc.collect()
        if self.upload is None:
            status, model = P.E_NO_UPLOAD, None
        else:
            self._engine_for(self.upload.read_window())
            gc.collect()  # what building it left behind, before the model's blocks
            status, model = self.upload.commit(self.key or b"", self.specs, self.n_features, self._engine_for)
            self.upload = None  # done either way; a later RESUME makes it again from upload.inf
            # Its module and the loader's go with it: frozen, their state (dictionaries,
            # functions, classes) is all they hold in RAM, and the next upload makes it again.
            _forget(_LOAD_MODULES + ("upload",))
        if status != P.OK:
            try:
                model = self._load(self.slots.active_path())
            except Exception:  # noqa: BLE001 - no file, or a model that no longer loads: run without
                model = None
                self._engine_for(None)
            self.model = model
            if self.engine is None:  # no room for that window: windows and heart rate as the profile says
                self.window_s, self.step_s = self.features_cfg.get("window_s", 30), self.features_cfg.get("step_s", 5)
                try:
                    self._new_engine()
                except MemoryError:
                    self.engine = self.hr = None
        if status == P.OK and model is not None:
            self.model = model
            self._fit_baseline()
            gc.collect()
            self.event(P.EV_MODEL_LOADED, model.model_id)
            self.reply(P.CMD_MODEL_COMMIT, seq, P.OK, model.model_id)
        else:
            self.event(P.EV_MODEL_REJECTED, status)
            self.reply(P.CMD_MODEL_COMMIT, seq, status)

    def _uploader(self):
        """The model upload, made at the first MODEL_BEGIN or RESUME: it writes this watch's slots."""
        if self.upload is None:
            from watch.upload import ModelUpload

            self.upload = ModelUpload(_MODEL_PATH, max_bytes=self._model_budget(), slots=self.slots)
        return self.upload

    def set_rate(self, stream, rate):
        """Re-start the sensor of `stream` at `rate` Hz (one of the profile's `rates_hz`).

        Its sample indices go on; a new STREAM_INFO gives the rate and the time of index 0
        that hold from now. The feature engine starts afresh at the new rates.
        """
        if self.safe:
            return P.E_SAFE_MODE
        sensor = self.ppg if stream == P.PPG else self.imu if stream in (P.ACC, P.GYRO) else None
        if sensor is None:
            return P.E_NO_SENSOR
        if rate not in sensor.rates:
            return P.E_BAD_RATE
        for s in sensor.streams:
            self.seal_samples(s)
        old = sensor.rate
        sensor.config["rate_hz"] = rate
        sensor.rate = rate
        try:
            sensor.start()
        except (OSError, ValueError):
            sensor.config["rate_hz"] = sensor.rate = old
            return P.E_BAD_RATE
        if sensor is self.ppg:
            self.ppg_rate = rate
        else:
            self.imu_rate = rate
        self._new_engine()
        for s in sensor.streams:
            if self.streaming & P.stream_bit(s):
                self.stream_info(sensor, s)
        self.event(P.EV_RATE_CHANGED, (stream << 16) | rate)
        return P.OK

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
            with open(_STREAMS_PATH, "wb") as f:
                f.write(bytes((self.streaming,)))

    def periodic(self):
        now = self.uptime()
        if not self._stable and now >= boot.STABLE_MS:
            self._stable = True
            boot.stable()
            self.slots.confirm()  # a new model that ran this long stays
        if now >= self._next_status:
            self._next_status = now + _STATUS_EVERY_MS
            if self.radio.connected:
                self.status()  # free heap over time, counters
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
        radio.heart_rate_send()  # without a central it forgets the RR intervals, as the service asks
        if not radio.connected:
            return
        budget = _FLUSH_BUDGET
        budget -= self.replies.flush(radio.notify_control, budget)
        budget -= self.events.flush(radio.notify_event, budget)
        budget -= self.preds.flush(radio.notify_prediction, budget)
        budget -= self.log.send_live(radio.notify_stream, budget)
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

    def wait(self, ms):
        """Sleep `ms`, waking for the polled parts (no FIFO) each time a sample is due."""
        sensor = self.ppg if self.ppg and self.ppg.driver.polled else None
        if sensor is None:
            time.sleep_ms(ms)
            return
        end = time.ticks_add(time.ticks_ms(), ms)
        while True:
            left = time.ticks_diff(end, time.ticks_ms())
            if left <= 0:
                return
            due = sensor.driver.until_due_us()
            if due > 0:
                time.sleep_us(min(due, left * 1000))
            sensor.poll()

    def run(self):
        self.radio.start()
        wdt = Watchdog(self._watchdog_ms)
        gc.collect()
        try:
            while True:
                start = time.ticks_ms()
                wdt.feed()
                self.step()
                left = _PERIOD_MS - time.ticks_diff(time.ticks_ms(), start)
                if left > 0:
                    self.wait(left)
        finally:
            self.log.close()
            self.radio.on_power_off()


def _forget(names):
    """Drop the modules watch.<name> of `names` after their use. Frozen, a module's RAM state
    (dictionary, functions, classes) is all it holds, and the next import makes it again."""
    import sys
    import watch

    for name in names:
        sys.modules.pop("watch." + name, None)
        if name in watch.__dict__:
            delattr(watch, name)


def _burst(cfg):
    """Samples a sensor's read buffers hold: `_CATCH_UP` periods at the part's top rate, so a
    loop that stalled catches up in a few periods while the rest waits in the FIFO (a small
    watch keeps the bytes a larger burst would take)."""
    return min(_BURST, max(cfg.get("rates_hz") or (cfg["rate_hz"],)) * _PERIOD_MS * _CATCH_UP // 1000 + 1)


def main():
    """Boot: count it, run (in safe mode after repeated crashes); a crash is logged and resets."""
    boots = boot.begin()
    gc.collect()  # the imports' garbage goes before the watch's buffers take their places
    try:
        Watch(boots).run()
    except Exception as e:  # SystemExit (power-off) and KeyboardInterrupt pass through
        boot.log_crash(e)
        machine.reset()
