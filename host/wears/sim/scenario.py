"""Scenario files for the virtual watch: synthetic physiology and recording replay (docs/scenario.md).

A scenario is what the wrist goes through during a virtual session: PPG as the MAX30102
would count it and wrist motion as the LSM6DS3TR-C would sense it, with labelled episodes.
The virtual watch's sensor models read it (`host/wears/sim/shims/sim_scenario.py`).

Example::

    from wears.sim import scenario
    sc = scenario.synthetic(seed=7, participant="P07")
    sc.write("p07.wscn")
    same = scenario.from_file("p07.wscn")
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wears.errors import WearsError

VERSION = 1
PPG_RECORD = np.dtype("<u4")  # per channel; a record is (ir, red)
IMU_RECORD = np.dtype("<i2")  # per channel; a record is (ax, ay, az in mg, gx, gy, gz in 0.1 dps)
ADC_MAX = (1 << 18) - 1  # 18-bit counts at 411 us pulse width
_ALIGN = 16
_MAX_HEADER = 1 << 16

#: WESAD protocol segment -> scenario label (reading is a transition and is dropped).
E4_LABELS = {"amusement": "pleasant", "stress": "unpleasant", "baseline": "rest", "meditation": "meditation"}


class ScenarioError(WearsError):
    """A scenario file that cannot be read: not a scenario, another version, truncated."""


@dataclass
class Scenario:
    """Physiology and motion of one wrist, at the rates the scenario file stores them.

    Parameters
    ----------
    ppg : (n, 2) uint32 array of IR and red counts (18-bit, MAX30102 at 411 us, 4096 nA,
        7.2 mA per LED); IR falls when blood volume rises.
    imu : (n, 6) int16 array: accelerometer x, y, z in mg, gyroscope x, y, z in 0.1 deg/s.
    ppg_rate, imu_rate : samples per second of each block.
    episodes : list of (start_s, end_s, label).
    """

    ppg: np.ndarray
    imu: np.ndarray
    ppg_rate: int = 100
    imu_rate: int = 52
    episodes: list = field(default_factory=list)
    source: str = "synthetic"
    participant: str = "P01"
    has_gyro: bool = True

    def __post_init__(self) -> None:
        self.ppg = np.asarray(self.ppg)
        self.imu = np.asarray(self.imu)
        if self.ppg.ndim != 2 or self.ppg.shape[1] != 2:
            raise ValueError(f"ppg must be (n, 2) (ir, red), not {self.ppg.shape}")
        if self.imu.ndim != 2 or self.imu.shape[1] != 6:
            raise ValueError(f"imu must be (n, 6), not {self.imu.shape}")
        if self.ppg.size and (self.ppg.min() < 0 or self.ppg.max() > ADC_MAX):
            raise ValueError("ppg counts must lie in 0..2^18-1")
        if self.imu.size and (self.imu.min() < -32768 or self.imu.max() > 32767):
            raise ValueError("imu values must fit int16")
        self.ppg = self.ppg.astype(np.uint32)
        self.imu = self.imu.astype(np.int16)
        if int(self.ppg_rate) != self.ppg_rate or int(self.imu_rate) != self.imu_rate or self.ppg_rate <= 0 \
                or self.imu_rate <= 0:
            raise ValueError("rates must be positive integers (Hz)")
        self.ppg_rate = int(self.ppg_rate)
        self.imu_rate = int(self.imu_rate)
        self.episodes = [(float(s), float(e), str(label)) for s, e, label in self.episodes]

    @property
    def duration_s(self) -> float:
        """How long the scenario lasts: the shorter of its two blocks (an empty block does not count)."""
        spans = [len(self.ppg) / self.ppg_rate] if len(self.ppg) else []
        if len(self.imu):
            spans.append(len(self.imu) / self.imu_rate)
        return min(spans) if spans else 0.0

    def labels_at(self, times_s) -> np.ndarray:
        """The episode label at each time in seconds ("" outside every episode)."""
        t = np.asarray(times_s, dtype=float)
        out = np.full(t.shape, "", dtype=object)
        for start, end, label in self.episodes:
            out[(t >= start) & (t < end)] = label
        return out

    def header(self) -> dict:
        n_ppg, n_imu = len(self.ppg), len(self.imu)
        h = {"version": VERSION, "ppg_rate": self.ppg_rate, "imu_rate": self.imu_rate, "n_ppg": n_ppg,
             "n_imu": n_imu, "ppg_offset": 0, "imu_offset": 0, "has_gyro": bool(self.has_gyro),
             "episodes": [[s, e, label] for s, e, label in self.episodes], "source": self.source,
             "participant": self.participant}
        # The offsets are part of the header: grow it until they agree with its length.
        for _ in range(4):
            line = json.dumps(h).encode()
            offset = -(-(len(line) + 1) // _ALIGN) * _ALIGN
            if offset == h["ppg_offset"]:
                break
            h["ppg_offset"] = offset
            h["imu_offset"] = offset + n_ppg * 2 * PPG_RECORD.itemsize
        return h

    def write(self, path) -> Path:
        """Write the `.wscn` file (header line padded to 16 bytes, then the PPG and IMU blocks)."""
        path = Path(path)
        h = self.header()
        line = json.dumps(h).encode()
        pad = h["ppg_offset"] - len(line) - 1
        with open(path, "wb") as f:
            f.write(line + b" " * pad + b"\n")
            f.write(self.ppg.astype(PPG_RECORD).tobytes())
            f.write(self.imu.astype(IMU_RECORD).tobytes())
        return path

    @classmethod
    def read(cls, path) -> Scenario:
        """Read a `.wscn` file; ScenarioError says what is wrong with a bad one."""
        path = Path(path)
        data = path.read_bytes()
        end = data.find(b"\n", 0, _MAX_HEADER)
        if end < 0 or not data.startswith(b"{"):
            raise ScenarioError(f"{path}: not a WEARS scenario (no JSON header line)")
        try:
            h = json.loads(data[:end])
        except ValueError as e:
            raise ScenarioError(f"{path}: not a WEARS scenario (header: {e})") from None
        if not isinstance(h, dict):
            raise ScenarioError(f"{path}: not a WEARS scenario (header is not an object)")
        if h.get("version") != VERSION:
            raise ScenarioError(f"{path}: scenario version {h.get('version')!r}, this toolkit reads {VERSION}")
        missing = [k for k in ("ppg_rate", "imu_rate", "n_ppg", "n_imu", "ppg_offset", "imu_offset") if k not in h]
        if missing:
            raise ScenarioError(f"{path}: scenario header lacks {', '.join(missing)}")
        n_ppg, n_imu = int(h["n_ppg"]), int(h["n_imu"])
        blocks = (("PPG", int(h["ppg_offset"]), n_ppg * 2 * PPG_RECORD.itemsize),
                  ("IMU", int(h["imu_offset"]), n_imu * 6 * IMU_RECORD.itemsize))
        for name, offset, size in blocks:
            if offset <= end or n_ppg < 0 or n_imu < 0:
                raise ScenarioError(f"{path}: scenario header is inconsistent ({name} block at {offset})")
            if offset + size > len(data):
                raise ScenarioError(f"{path}: scenario truncated: the {name} block needs bytes {offset}.."
                                    f"{offset + size}, the file has {len(data)}")
        ppg = np.frombuffer(data, PPG_RECORD, n_ppg * 2, blocks[0][1]).reshape(n_ppg, 2)
        imu = np.frombuffer(data, IMU_RECORD, n_imu * 6, blocks[1][1]).reshape(n_imu, 6)
        try:
            return cls(ppg=ppg, imu=imu, ppg_rate=h["ppg_rate"], imu_rate=h["imu_rate"],
                       episodes=h.get("episodes", []), source=h.get("source", ""),
                       participant=h.get("participant", ""), has_gyro=bool(h.get("has_gyro", True)))
        except (TypeError, ValueError) as e:
            raise ScenarioError(f"{path}: bad scenario: {e}") from None


def from_file(path) -> Scenario:
    """The scenario stored at `path` (Scenario.read)."""
    return Scenario.read(path)


# -- synthetic physiology ----------------------------------------------------------------------

def _band_noise(rng: np.random.Generator, n: int, fs: float, lo: float, hi: float) -> np.ndarray:
    """Gaussian noise limited to lo..hi Hz, unit standard deviation."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / fs)
    spectrum[(f < lo) | (f > hi)] = 0
    x = np.fft.irfft(spectrum, n)
    sd = x.std()
    return x / sd if sd > 0 else x


def _bumps(rng: np.random.Generator, t: np.ndarray, level: np.ndarray, per_s: float, seconds, degrees):
    """Fidget movements: raised-cosine excursions of the three wrist angles, more where `level` is high."""
    out = np.zeros((3, len(t)))
    if per_s <= 0 or len(t) == 0:
        return out
    fs = 1 / (t[1] - t[0]) if len(t) > 1 else 1.0
    duration = t[-1] + 1 / fs
    weight = np.cumsum(level) / fs  # expected bumps ~ level-weighted time
    count = rng.poisson(per_s * weight[-1])
    for u in rng.uniform(0, weight[-1], count):
        centre = t[np.searchsorted(weight, u)]
        width = rng.uniform(*seconds)
        amp = rng.normal(0, 1, 3) * rng.uniform(*degrees)
        lo, hi = np.searchsorted(t, [centre - width / 2, min(centre + width / 2, duration)])
        if hi > lo:
            phase = (t[lo:hi] - (centre - width / 2)) / width
            out[:, lo:hi] += amp[:, None] * 0.5 * (1 - np.cos(2 * np.pi * phase))
    return out


def synthetic(seed: int, *, participant: str = "P01", rest_s: int = 60, episode_s: int = 90, n_episodes: int = 6,
              ppg_rate: int = 100, imu_rate: int = 52) -> Scenario:
    """Synthetic wrist physiology with labelled pleasant and unpleasant episodes.

    A resting baseline (label "rest"), then `n_episodes` episodes alternating between
    "pleasant" and "unpleasant", the first one chosen by `seed`. Pleasant episodes have a
    lower heart rate (about 66-72 bpm) and more variability; unpleasant ones a higher heart
    rate (about 82-92 bpm), less variability and a more restless wrist. The exact values are
    drawn per seed (per participant), so a model must generalise across them.

    Parameters
    ----------
    seed : everything is drawn from it: the same seed gives the same scenario.
    participant : pseudonymous id stored in the file.
    rest_s, episode_s : lengths in seconds.
    ppg_rate, imu_rate : rates of the PPG and IMU blocks in Hz.

    Returns
    -------
    Scenario
    """
    import neurokit2 as nk

    rng = np.random.default_rng(seed)
    # Who this participant is: resting heart rate, how each state moves it, skin and fit.
    hr = {"rest": rng.uniform(72, 78), "pleasant": rng.uniform(66, 72), "unpleasant": rng.uniform(82, 92)}
    variability = {"rest": (rng.uniform(0.15, 0.25), rng.uniform(0.08, 0.12)),
                   "pleasant": (rng.uniform(0.25, 0.4), rng.uniform(0.12, 0.2)),
                   "unpleasant": (rng.uniform(0.04, 0.1), rng.uniform(0.02, 0.05))}
    restless = {"rest": 1.0, "pleasant": rng.uniform(1.2, 1.8), "unpleasant": rng.uniform(2.5, 4.0)}
    fidgets_per_min = {"rest": 0.3, "pleasant": rng.uniform(0.5, 1.5), "unpleasant": rng.uniform(3.0, 6.0)}
    dc_ir = rng.uniform(100000, 120000)
    dc_red = dc_ir * rng.uniform(0.75, 0.9)
    ac_ir = dc_ir * rng.uniform(0.008, 0.012)  # peak-to-peak pulse: ~1 % of DC
    ac_red = dc_red * rng.uniform(0.004, 0.006)  # R ~ 0.5: SpO2 near 97 %

    first = int(rng.integers(2))
    labels = [("pleasant", "unpleasant")[(first + i) % 2] for i in range(n_episodes)]
    segments = ([("rest", rest_s)] if rest_s > 0 else []) + [(label, episode_s) for label in labels]
    episodes, start = [], 0.0
    for label, seconds in segments:
        episodes.append((start, start + seconds, label))
        start += seconds
    total_s = int(start)

    # PPG: one neurokit2 simulation per segment, crossfaded over 1 s at the boundaries.
    n = total_s * ppg_rate
    fade = ppg_rate
    pulse = np.zeros(n + fade)
    for (s, e, label) in episodes:
        a = int(round(s * ppg_rate))
        length = int(round(e * ppg_rate)) - a + fade
        fm, ibi = variability[label]
        # neurokit2 leaves duration and heart_rate unannotated (int from their defaults) but
        # computes with any real number (60 / heart_rate, ceil(duration * sampling_rate)):
        # the fractional values here are meant.
        x = nk.ppg_simulate(duration=length / ppg_rate, sampling_rate=ppg_rate,  # pyright: ignore[reportArgumentType]
                            heart_rate=hr[label] + rng.normal(0, 1.0),  # pyright: ignore[reportArgumentType]
                            frequency_modulation=fm,
                            ibi_randomness=ibi, drift=0, motion_amplitude=0, powerline_amplitude=0,
                            burst_number=0, random_state=int(rng.integers(2**31)))[:length]
        x = np.pad(x, (0, length - len(x)), mode="edge")
        lo, hi = np.percentile(x, [2, 98])
        x = (x - np.median(x)) / max(hi - lo, 1e-9)  # ~unit peak-to-peak
        window = np.ones(length)
        if a > 0:
            window[:fade] = np.linspace(0, 1, fade)
        window[-fade:] = np.linspace(1, 0, fade)
        pulse[a:a + length] += x * window
    pulse = pulse[:n]

    # Motion at the IMU rate: orientation drift, small movements, fidgets.
    m = total_s * imu_rate
    t = np.arange(m) / imu_rate
    level = np.ones(m)
    fidget_rate = np.zeros(m)
    for s, e, label in episodes:
        sel = (t >= s) & (t < e)
        level[sel] = restless[label]
        fidget_rate[sel] = fidgets_per_min[label]
    kernel = np.ones(imu_rate) / imu_rate
    level = np.convolve(level, kernel, mode="same")
    base = rng.uniform(-25, 25, 3) * np.array([1, 1, 0])
    drift = np.stack([_band_noise(rng, m, imu_rate, 0.002, 0.03) * rng.uniform(3, 8) for _ in range(3)])
    wobble = np.stack([_band_noise(rng, m, imu_rate, 0.3, 2.5) for _ in range(3)]) * (0.4 * level)
    fidget = _bumps(rng, t, fidget_rate / fidget_rate.max() if fidget_rate.max() else fidget_rate,
                    fidget_rate.max() / 60, (0.6, 2.0), (4.0, 15.0))
    angles = base[:, None] + drift + wobble + fidget  # roll, pitch, yaw in degrees
    roll, pitch = np.radians(angles[0]), np.radians(angles[1])
    gravity = 1000 * np.stack([-np.sin(pitch), np.sin(roll) * np.cos(pitch), np.cos(roll) * np.cos(pitch)])
    linear = np.stack([_band_noise(rng, m, imu_rate, 0.5, 4.0) for _ in range(3)]) * (4.0 * level)
    accel = gravity + linear + rng.normal(0, 2.0, (3, m))
    gyro = np.gradient(angles, 1 / imu_rate, axis=1) + rng.normal(0, 0.3, (3, m))  # deg/s
    imu = np.concatenate([accel, gyro * 10]).T

    # Motion disturbs the optical signal a little; breathing and perfusion move the baseline.
    tp = np.arange(n) / ppg_rate
    motion = np.interp(tp, t, np.linalg.norm(linear, axis=0) + np.abs(np.gradient(fidget[0], axis=0)) * 20)
    breathing = np.sin(2 * np.pi * rng.uniform(0.2, 0.3) * tp + rng.uniform(0, 2 * np.pi))
    baseline = 0.004 * _band_noise(rng, n, ppg_rate, 0.003, 0.05) + 0.0015 * breathing
    artefact = _band_noise(rng, n, ppg_rate, 0.1, 2.0) * motion / 600
    ir = dc_ir * (1 + baseline) - ac_ir * (pulse + artefact) + rng.normal(0, 0.02 * ac_ir, n)
    red = dc_red * (1 + baseline) - ac_red * (pulse + artefact) + rng.normal(0, 0.02 * ac_red, n)
    ppg = np.clip(np.rint(np.stack([ir, red], axis=1)), 0, ADC_MAX)

    return Scenario(ppg=ppg.astype(np.uint32), imu=np.clip(np.rint(imu), -32768, 32767).astype(np.int16),
                    ppg_rate=ppg_rate, imu_rate=imu_rate, episodes=episodes, source=f"synthetic:seed={seed}",
                    participant=participant, has_gyro=True)


# -- recording replay ----------------------------------------------------------------------------

def _e4_csv(path: Path, start_s: float, duration_s: float | None) -> tuple[float, np.ndarray]:
    """(rate, samples) of one Empatica E4 stream, cut to start_s..start_s + duration_s."""
    with open(path) as f:
        f.readline()
        rate = float(f.readline().split(",")[0])
    skip = 2 + int(np.floor(start_s * rate))
    rows = None if duration_s is None else int(np.ceil(duration_s * rate)) + 2
    data = np.loadtxt(path, delimiter=",", skiprows=skip, max_rows=rows, ndmin=2)
    return rate, data


def from_e4(folder, annotations=None, *, start_s: float = 0.0, duration_s: float | None = None,
            ppg_rate: int = 100, imu_rate: int = 52, participant: str | None = None,
            margin_s: float = 10.0, labels: dict | None = E4_LABELS) -> Scenario:
    """Replay of an Empatica E4 export (BVP 64 Hz, ACC 32 Hz in 1/64 g) as a scenario.

    Parameters
    ----------
    folder : the E4 folder (with BVP.csv and ACC.csv) or the subject folder holding `E4/`.
    annotations : CSV `start_s,end_s,label,condition` in seconds from the recording start;
        default: `annotations.csv` next to or inside the E4 folder when present. WESAD labels
        map to scenario labels by `labels` (E4_LABELS; others are dropped), or stay as they
        are with labels=None (the importer keeps them for the recipe's mapping).
    start_s, duration_s : the part of the recording to replay (default: all of it).
    margin_s : trimmed from both ends of every annotated segment (alignment is +-1 s).

    BVP becomes IR and red counts (inverted: more blood, less light; 1 % of DC peak-to-peak
    over the replayed part), ACC becomes mg; the E4 has no gyroscope, so `has_gyro` is False
    and the gyro channels are zero.
    """
    folder = Path(folder)
    if (folder / "E4").is_dir():
        folder = folder / "E4"
    subject = folder.parent if folder.name == "E4" else folder
    for name in ("BVP.csv", "ACC.csv"):
        if not (folder / name).exists():
            raise ScenarioError(f"{folder}: no {name}: not an Empatica E4 export")
    bvp_rate, bvp = _e4_csv(folder / "BVP.csv", start_s, duration_s)
    acc_rate, acc = _e4_csv(folder / "ACC.csv", start_s, duration_s)
    bvp = bvp[:, 0]
    available = min(len(bvp) / bvp_rate, len(acc) / acc_rate)
    if available <= 0:
        raise ScenarioError(f"{folder}: nothing to replay from {start_s} s")
    span = available if duration_s is None else min(duration_s, available)
    t_ppg = np.arange(int(span * ppg_rate)) / ppg_rate
    t_imu = np.arange(int(span * imu_rate)) / imu_rate
    # the cut starts on a whole sample: align its clock with start_s
    bvp_t0 = np.floor(start_s * bvp_rate) / bvp_rate - start_s
    acc_t0 = np.floor(start_s * acc_rate) / acc_rate - start_s
    b = np.interp(t_ppg, bvp_t0 + np.arange(len(bvp)) / bvp_rate, bvp)
    lo, hi = np.percentile(b, [1, 99]) if len(b) else (0.0, 1.0)
    unit = b / max(hi - lo, 1e-9)
    dc_ir, dc_red = 110000.0, 90000.0
    ir = dc_ir - 0.01 * dc_ir * unit
    red = dc_red - 0.005 * dc_red * unit
    ppg = np.clip(np.rint(np.stack([ir, red], axis=1)), 0, ADC_MAX).astype(np.uint32)
    acc_t = acc_t0 + np.arange(len(acc)) / acc_rate
    mg = np.stack([np.interp(t_imu, acc_t, acc[:, i]) for i in range(3)], axis=1) * (1000 / 64)
    imu = np.zeros((len(t_imu), 6), dtype=np.int16)
    imu[:, :3] = np.clip(np.rint(mg), -32768, 32767)

    if annotations is None:
        for candidate in (subject / "annotations.csv", folder / "annotations.csv"):
            if candidate.exists():
                annotations = candidate
                break
    episodes = []
    if annotations is not None:
        with open(annotations, newline="") as f:
            for row in csv.DictReader(f):
                label = row["label"].strip() if labels is None else labels.get(row["label"].strip().lower())
                if label is None:
                    continue
                s = float(row["start_s"]) - start_s + margin_s
                e = float(row["end_s"]) - start_s - margin_s
                s, e = max(s, 0.0), min(e, span)
                if e > s:
                    episodes.append((round(s, 3), round(e, 3), label))
    return Scenario(ppg=ppg, imu=imu, ppg_rate=ppg_rate, imu_rate=imu_rate, episodes=episodes,
                    source=f"empatica-e4:{subject.name}", participant=participant or subject.name,
                    has_gyro=False)


TROIKA_RATE = 125  # Hz, every channel of a TROIKA recording


def from_troika(path, *, ppg_rate: int = 100, imu_rate: int = 52, participant: str | None = None,
                rest_s: float = 20.0) -> Scenario:
    """Replay of a TROIKA recording (IEEE SPC 2015 `DATA_*.mat`: ECG, 2 PPG, 3-axis accel at 125 Hz).

    Parameters
    ----------
    path : the `DATA_XX_TYPEYY.mat` file (variable `sig`, 6 x N).
    ppg_rate, imu_rate : rates of the scenario blocks in Hz; the channels are resampled with
        an anti-aliasing polyphase filter (scipy `resample_poly`), as the parts' own filters do.
    rest_s : the recording's first seconds, at rest (every TROIKA recording starts so), that
        set the PPG's scale.

    PPG channel 1 becomes IR and channel 2 red (inverted: more blood, less light). Their
    scale is that of a wrist MAX30102: the 5-95 % span over the first `rest_s` seconds, the
    resting pulse, becomes 1 % of DC (IR) and 0.5 % (red); motion artefacts keep their size
    relative to the pulse, clipped to the 18-bit ADC. The accelerometer, in g, becomes mg
    (the sensor model clips it to the configured full scale); TROIKA has no gyroscope.
    """
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError
    from scipy.signal import resample_poly

    path = Path(path)
    try:
        sig = np.asarray(loadmat(path)["sig"], dtype=float)
    except (OSError, ValueError, KeyError, MatReadError) as e:
        raise ScenarioError(f"{path}: not a TROIKA recording ({e})") from None
    if sig.ndim != 2 or sig.shape[0] != 6 or sig.shape[1] < TROIKA_RATE * rest_s:
        raise ScenarioError(f"{path}: a TROIKA recording is 6 x N samples at 125 Hz, this one is {sig.shape}")

    def resample(x: np.ndarray, rate: int) -> np.ndarray:
        g = np.gcd(rate, TROIKA_RATE)
        n = sig.shape[1] * rate // TROIKA_RATE
        return resample_poly(x, rate // g, TROIKA_RATE // g, padtype="line")[:n]

    channels = []
    for row, dc, pulse in ((1, 110000.0, 0.01), (2, 90000.0, 0.005)):
        x = resample(sig[row], ppg_rate)
        lo, hi = np.percentile(x[:int(rest_s * ppg_rate)], [5, 95])
        channels.append(dc - pulse * dc * (x - np.median(x)) / max(hi - lo, 1e-9))
    ppg = np.clip(np.rint(np.stack(channels, axis=1)), 0, ADC_MAX).astype(np.uint32)
    acc = np.stack([resample(sig[row], imu_rate) for row in (3, 4, 5)], axis=1) * 1000
    imu = np.zeros((len(acc), 6), dtype=np.int16)
    imu[:, :3] = np.clip(np.rint(acc), -32768, 32767)
    return Scenario(ppg=ppg, imu=imu, ppg_rate=ppg_rate, imu_rate=imu_rate, episodes=[],
                    source=f"troika:{path.stem}", participant=participant or path.stem.replace("DATA_", ""),
                    has_gyro=False)


__all__ = ["Scenario", "ScenarioError", "synthetic", "from_e4", "from_troika", "from_file", "E4_LABELS"]
