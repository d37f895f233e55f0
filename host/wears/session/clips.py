"""Generated stand-in clips (ffmpeg): a test pattern with a tone, for trying a protocol and for tests.

Real studies use their own normed clips; these exist so that a protocol, the screens and the
timing can be checked end to end before the real clips are in place.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..errors import WearsError
from .protocol import StudyProtocol

PATTERNS = ("testsrc", "testsrc2", "smptebars", "rgbtestsrc")


def make_clip(path: str | Path, seconds: float, *, pattern: str = "testsrc", fps: int = 30,
              size: str = "320x240", tone_hz: int = 440) -> Path:
    """Write a WebM (VP8 + Opus) clip of `seconds` to `path` with ffmpeg."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise WearsError("ffmpeg is not installed (apt-get install ffmpeg)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", f"{pattern}=s={size}:r={fps}:d={seconds}",
           "-f", "lavfi", "-i", f"sine=frequency={tone_hz}:duration={seconds}",
           "-c:v", "libvpx", "-b:v", "300k", "-c:a", "libopus", "-shortest", str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise WearsError(f"ffmpeg could not make {path}: {done.stderr.strip()[-300:]}")
    return path


def make_protocol_clips(protocol: StudyProtocol, *, missing_only: bool = True) -> list[Path]:
    """Generate a stand-in for every clip of the protocol (those missing, by default)."""
    made = []
    for n, clip in enumerate(protocol.clips.values()):
        if missing_only and clip.file.is_file():
            continue
        made.append(make_clip(clip.file, clip.duration_s, pattern=PATTERNS[n % len(PATTERNS)],
                              tone_hz=330 + 110 * (n % 5)))
    return made

_TRIAL_PROTOCOL = """
[study]
name = "test study"

[timing]
baseline_s = {baseline_s}
washout_s = {washout_s}

[order]
method = "random"
seed = 5

[rating]
scales = ["valence", "arousal"]

[preflight]
min_battery_pct = 10
min_flash_free_kb = 0
min_signal_quality = 0
quality_windows = {quality_windows}

{clips}

[sets]
en = [{en}]
hi = [{hi}]

[languages]
en = ["en"]
hi = ["hi", "en"]

[[attention_checks]]
after_clip = 2
answer = 3
"""

_TRIAL_CLIP = """[[clips]]
id = "{id}"
file = "clips/{lang}/{name}.webm"
language = "{lang}"
valence = {valence}
arousal = 5
duration_s = {seconds}
"""


def write_trial_study(folder: Path, *, per_language: int = 2, seconds: float = 1.5, baseline_s: float = 1.5,
                washout_s: float = 0.5, quality_windows: int = 1, fps: int = 30) -> Path:
    """A short study with generated clips in English and Hindi (for tests, benchmarks and a first try).

    Writes protocol.toml and its clips into `folder`; returns the protocol's path.
    """
    clips, ids = [], {"en": [], "hi": []}
    n = 0
    for lang in ("en", "hi"):
        for i in range(per_language):
            clip_id = f"{lang}-{i + 1}"
            ids[lang].append(f'"{clip_id}"')
            clips.append(_TRIAL_CLIP.format(id=clip_id, lang=lang, name=f"clip-{i + 1}", valence=3 + 4 * (i % 2),
                                     seconds=seconds))
            make_clip(folder / "clips" / lang / f"clip-{i + 1}.webm", seconds, fps=fps, tone_hz=300 + 50 * n)
            n += 1
    path = folder / "protocol.toml"
    path.write_text(_TRIAL_PROTOCOL.format(baseline_s=baseline_s, washout_s=washout_s, quality_windows=quality_windows,
                                    clips="\n".join(clips), en=", ".join(ids["en"]), hi=", ".join(ids["hi"])))
    return path
