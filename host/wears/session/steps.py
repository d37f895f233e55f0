"""A run as a list of steps: instructions, baseline, then clip, rating, attention check, wash-out."""

from __future__ import annotations

from dataclasses import dataclass

from .protocol import AttentionCheck, StudyProtocol

TIMED = ("baseline", "washout")  # steps the host times; a clip is timed by its own frames


@dataclass(frozen=True)
class Step:
    index: int
    kind: str  # 'instructions', 'baseline', 'clip', 'rating', 'attention', 'washout', 'end'
    clip_id: str | None = None
    duration_s: float = 0.0
    rates_step: int | None = None  # a rating: the index of the clip step it rates
    check: AttentionCheck | None = None


def build_steps(protocol: StudyProtocol, clip_order: list[str]) -> list[Step]:
    """The steps of a run in the order the participant meets them."""
    kinds: list[dict] = [{"kind": "instructions"}]
    if protocol.baseline_s > 0:
        kinds.append({"kind": "baseline", "duration_s": protocol.baseline_s})
    checks = {c.after_clip: c for c in protocol.attention_checks}
    for n, clip_id in enumerate(clip_order, 1):
        clip_step = len(kinds)
        kinds.append({"kind": "clip", "clip_id": clip_id, "duration_s": protocol.clips[clip_id].duration_s})
        kinds.append({"kind": "rating", "clip_id": clip_id, "rates_step": clip_step})
        if n in checks:
            kinds.append({"kind": "attention", "check": checks[n]})
        if n < len(clip_order) and protocol.washout_s > 0:
            kinds.append({"kind": "washout", "duration_s": protocol.washout_s})
    kinds.append({"kind": "end"})
    return [Step(index=i, **k) for i, k in enumerate(kinds)]
