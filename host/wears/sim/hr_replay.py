"""Heart rate of a recording replayed through the virtual watch, against a reference and a plain baseline.

The watch's HEART_RATE packets come over bleak from the unmodified firmware running the
scenario (wears.sim.scenario.from_troika); `spectral_peak_bpm` is the plain estimator it is
compared with: the highest peak of the PPG's spectrum in the same windows, no motion handling.

Example::

    sc = scenario.from_troika("DATA_01_TYPE01.mat"); sc.write("t01.wscn")
    got = asyncio.run(watch_heart_rates("t01.wscn"))      # {PPG index of window end: (bpm x10, quality)}
    ends_s, ref = troika_reference("REF_01_TYPE01.mat")
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np

from ..ble.virtual import VirtualBleakClient
from ..client import WatchClient
from ..errors import WearsError
from ..paths import DEFAULT_BOARD
from ..protocol import HeartRate, Packet
from .runner import VirtualWatch

#: TROIKA's reference windows: 8 s every 2 s, window i covers [2 i, 2 i + 8) s.
TROIKA_WINDOW_S = 8
TROIKA_STEP_S = 2
BAND_HZ = (0.5, 3.5)  # the baseline's search band: 30..210 bpm, as the watch's


async def watch_heart_rates(scenario_path: str | os.PathLike[str], *, board: str = DEFAULT_BOARD,
                            timeout_s: float = 600.0) -> dict[int, tuple[int, int]]:
    """Run the scenario on a virtual watch to its end; its HEART_RATE packets by window end.

    Returns {PPG index of the window's end: (bpm x10, quality)}. The watch powers off when
    the scenario ends; every packet sent before that is here.
    """
    got: dict[int, tuple[int, int]] = {}

    def keep(_channel: str, packet: Packet) -> None:
        if isinstance(packet, HeartRate):
            got[packet.index] = (packet.bpm_x10, packet.quality)

    async with VirtualWatch(scenario_path, board=board) as vw:
        async with WatchClient(vw.address, backend=VirtualBleakClient, on_packet=keep) as watch:
            try:
                await asyncio.wait_for(watch.disconnected.wait(), timeout_s)
            except asyncio.TimeoutError:
                raise WearsError(f"the virtual watch did not finish {scenario_path} in {timeout_s:.0f} s") from None
        if await vw.wait() != 0:
            raise WearsError(f"the virtual watch failed on {scenario_path}:\n{vw.stderr[-2000:]}")
    return got


def spectral_peak_bpm(ppg: np.ndarray, rate: float, ends: np.ndarray, window_s: float = TROIKA_WINDOW_S,
                      band_hz: tuple[float, float] = BAND_HZ) -> np.ndarray:
    """The plain spectral-peak heart rate of each window [end - window_s, end) (end in samples).

    Mean removed, Hann window, FFT zero-padded to 0.1 bpm resolution, the highest peak in
    `band_hz`; no motion handling, no tracking. NaN for a window outside the signal.
    """
    ppg = np.asarray(ppg, dtype=float)
    w = int(round(window_s * rate))
    nfft = 1 << int(np.ceil(np.log2(rate * 600)))  # bins below 0.1 bpm apart
    f = np.fft.rfftfreq(nfft, 1 / rate)
    band = (f >= band_hz[0]) & (f <= band_hz[1])
    out = np.full(len(ends), np.nan)
    for i, end in enumerate(np.asarray(ends, dtype=int)):
        if end - w < 0 or end > len(ppg):
            continue
        x = ppg[end - w:end]
        power = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(w), nfft)) ** 2
        out[i] = 60 * f[band][np.argmax(power[band])]
    return out


def troika_reference(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """(window ends in s, ECG heart rate in bpm) of a TROIKA `REF_*.mat` (variable BPM0)."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        bpm = np.asarray(loadmat(Path(path))["BPM0"], dtype=float).ravel()
    except (OSError, ValueError, KeyError, MatReadError) as e:
        raise WearsError(f"{path}: not a TROIKA reference ({e})") from None
    return TROIKA_WINDOW_S + TROIKA_STEP_S * np.arange(len(bpm)), bpm


__all__ = ["watch_heart_rates", "spectral_peak_bpm", "troika_reference", "TROIKA_WINDOW_S", "TROIKA_STEP_S"]
