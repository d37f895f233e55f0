"""The study protocol file (TOML): clips, sets per language, order, baseline, wash-out, scales.

Example:
    >>> protocol = load_protocol("examples/study/protocol.toml")  # doctest: +SKIP
    >>> protocol.clip_order("hi", seed=7)  # doctest: +SKIP
    ['hi-calm-1', 'en-funny-1', ...]
"""

from __future__ import annotations

import hashlib
import random
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import WearsError

SCALES = ("valence", "arousal", "dominance")
ORDER_METHODS = ("random", "counterbalanced", "fixed")
LANGUAGES = ("en", "hi")  # languages the participant screen has instructions in
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ProtocolFileError(WearsError):
    """A study protocol file that cannot be run as written."""


@dataclass(frozen=True)
class Clip:
    """One stimulus of the clip library."""

    id: str
    file: Path  # absolute
    language: str
    valence: float  # intended (e.g. from the clip's norming study), 1..9
    arousal: float
    duration_s: float


@dataclass(frozen=True)
class AttentionCheck:
    """An instructed-response item shown after a clip: "select 3 on this scale"."""

    after_clip: int  # 1-based position in the participant's clip order
    answer: int
    prompt: dict[str, str] = field(default_factory=dict)  # language -> text; "{answer}" is filled in


@dataclass(frozen=True)
class Preflight:
    min_battery_pct: int = 20
    min_flash_free_kb: int = 256
    min_signal_quality: int = 50  # median heart-rate quality (0..100) of the last windows
    quality_windows: int = 3


@dataclass(frozen=True)
class StudyProtocol:
    """A parsed protocol file. `source` is the file's text, stored with every run."""

    name: str
    source: str
    path: Path
    clips: dict[str, Clip]
    sets: dict[str, list[str]]  # set name -> clip ids
    languages: dict[str, list[str]]  # participant language -> set names shown, in order
    order_method: str
    order_seed: int | None
    baseline_s: float
    washout_s: float
    scales: tuple[str, ...]
    points: int
    pleasant_at_least: int
    unpleasant_at_most: int
    attention_checks: tuple[AttentionCheck, ...]
    preflight: Preflight

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()

    def clips_for(self, language: str) -> list[str]:
        """The clip ids a participant of `language` sees, before ordering."""
        if language not in self.languages:
            raise ProtocolFileError(f"{self.path}: no clip sets for language {language!r} "
                                    f"(it has {', '.join(sorted(self.languages))})")
        return [clip for name in self.languages[language] for clip in self.sets[name]]

    def clip_order(self, language: str, *, seed: int, slot: int = 0) -> list[str]:
        """The participant's clip order.

        `random`: shuffled by `seed` (recorded with the run, so the order can be rebuilt);
        `counterbalanced`: row `slot` of a balanced Latin square (Williams design: each clip
        appears at each position, and follows each other clip, equally often over the rows);
        `fixed`: as listed.
        """
        ids = self.clips_for(language)
        if self.order_method == "random":
            random.Random(seed).shuffle(ids)
            return ids
        if self.order_method == "counterbalanced":
            return [ids[i] for i in balanced_latin_square_row(len(ids), slot)]
        return ids

    def label_for(self, valence: int) -> str | None:
        """Binary valence label of a rating: 'pleasant', 'unpleasant' or None (excluded)."""
        if valence >= self.pleasant_at_least:
            return "pleasant"
        if valence <= self.unpleasant_at_most:
            return "unpleasant"
        return None


def balanced_latin_square_row(n: int, row: int) -> list[int]:
    """Row `row` of a balanced Latin square of order n (Williams 1949); odd n alternate mirrors."""
    if n == 0:
        return []
    r = row % (n if n % 2 == 0 else 2 * n)
    base = r % n
    order, j, h = [], 0, 0
    for i in range(n):
        if i < 2 or i % 2 != 0:
            val = j
            j += 1
        else:
            val = n - h - 1
            h += 1
        order.append((val + base) % n)
    if n % 2 and r >= n:
        order.reverse()
    return order


def load_protocol(path: str | Path) -> StudyProtocol:
    """Read and check a protocol file; clip files are resolved against the file's folder."""
    path = Path(path).resolve()
    try:
        source = path.read_text(encoding="utf-8")
        doc = tomllib.loads(source)
    except OSError as e:
        raise ProtocolFileError(f"{path}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ProtocolFileError(f"{path}: not valid TOML: {e}") from e
    try:
        return _parse(doc, source, path)
    except (KeyError, TypeError, ValueError) as e:
        raise ProtocolFileError(f"{path}: {e}") from e


def _table(doc: dict, key: str) -> dict:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ValueError(f"[{key}] must be a table")
    return value


def _parse(doc: dict, source: str, path: Path) -> StudyProtocol:
    study, timing, order, rating = (_table(doc, k) for k in ("study", "timing", "order", "rating"))
    clips: dict[str, Clip] = {}
    for n, c in enumerate(doc.get("clips", []), 1):
        where = f"clip {n}"
        for key in ("id", "file", "language", "duration_s"):
            if key not in c:
                raise ValueError(f"{where} has no {key!r}")
        if not _ID.match(str(c["id"])):
            raise ValueError(f"{where}: id {c['id']!r} must be letters, digits, '.', '_' or '-'")
        if c["id"] in clips:
            raise ValueError(f"clip id {c['id']!r} appears twice")
        valence, arousal = float(c.get("valence", 5)), float(c.get("arousal", 5))
        if not (1 <= valence <= 9 and 1 <= arousal <= 9):
            raise ValueError(f"clip {c['id']!r}: intended valence and arousal are on the 1..9 SAM scale")
        if float(c["duration_s"]) <= 0:
            raise ValueError(f"clip {c['id']!r}: duration_s must be positive")
        clips[c["id"]] = Clip(c["id"], (path.parent / c["file"]).resolve(), str(c["language"]), valence, arousal,
                              float(c["duration_s"]))
    if not clips:
        raise ValueError("no [[clips]]")
    sets = {name: list(ids) for name, ids in _table(doc, "sets").items()}
    for name, ids in sets.items():
        unknown = [i for i in ids if i not in clips]
        if unknown:
            raise ValueError(f"set {name!r} names unknown clips: {', '.join(unknown)}")
        if len(set(ids)) != len(ids):
            raise ValueError(f"set {name!r} lists a clip twice")
    languages = {lang: list(names) for lang, names in _table(doc, "languages").items()}
    if not languages:
        raise ValueError("[languages] must say which sets a participant of each language sees")
    for lang, names in languages.items():
        if lang not in LANGUAGES:
            raise ValueError(f"language {lang!r}: the participant screen has instructions in {', '.join(LANGUAGES)}")
        for name in names:
            if name not in sets:
                raise ValueError(f"language {lang!r} names unknown set {name!r}")
    method = order.get("method", "random")
    if method not in ORDER_METHODS:
        raise ValueError(f"[order] method must be one of {', '.join(ORDER_METHODS)}")
    seed = order.get("seed")
    scales = tuple(rating.get("scales", ("valence", "arousal")))
    if "valence" not in scales or any(s not in SCALES for s in scales):
        raise ValueError(f"[rating] scales must include valence and be among {', '.join(SCALES)}")
    points = int(rating.get("points", 9))
    pleasant, unpleasant = int(rating.get("pleasant_at_least", 6)), int(rating.get("unpleasant_at_most", 4))
    if not (1 <= unpleasant < pleasant <= points):
        raise ValueError("[rating] needs 1 <= unpleasant_at_most < pleasant_at_least <= points")
    checks = []
    for c in doc.get("attention_checks", []):
        answer = int(c["answer"])
        if not 1 <= answer <= points:
            raise ValueError(f"attention check answer {answer} is off the 1..{points} scale")
        checks.append(AttentionCheck(int(c["after_clip"]), answer, dict(c.get("prompt", {}))))
    baseline_s, washout_s = float(timing.get("baseline_s", 120)), float(timing.get("washout_s", 30))
    if baseline_s < 0 or washout_s < 0:
        raise ValueError("[timing] durations cannot be negative")
    pre = _table(doc, "preflight")
    return StudyProtocol(
        name=str(study.get("name", path.stem)), source=source, path=path, clips=clips, sets=sets,
        languages=languages, order_method=method, order_seed=None if seed is None else int(seed),
        baseline_s=baseline_s, washout_s=washout_s, scales=scales, points=points, pleasant_at_least=pleasant,
        unpleasant_at_most=unpleasant, attention_checks=tuple(checks),
        preflight=Preflight(**{k: int(v) for k, v in pre.items()}))
