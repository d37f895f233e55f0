"""What a model blob's feature-spec id names (docs/features.md, "Feature set").

The current ids come from the firmware (`watch.features.spec_for`). The retired ones are kept
here as history, so that a blob made for one is refused with a message that names its feature
set and says what to do, instead of a bare number: a blob trained on feature set 1 would
otherwise run on feature set 2's values of `hr_std`, `hr_min`, `hr_max` and `sdnn`.

Example:
    >>> describe_spec(3)
    'feature set 1 with the gyroscope (spec 3, retired)'
    >>> require_current(3, 22)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    wears.errors.ModelBlobError: the model was made for feature set 1 with the gyroscope (spec 3, retired); ...
"""

from __future__ import annotations

from watch import features as F
from watch import protocol as P

from .errors import ModelBlobError

# Retired spec id -> what it named. Ids are never reused.
RETIRED = {
    1: "the foundation's 13-feature draft",
    2: "the foundation's 11-feature draft",
    3: "feature set 1 with the gyroscope",
    4: "feature set 1 without the gyroscope",
    5: "feature set 1 with the gyroscope, minus the wearer's baseline",
    6: "feature set 1 without the gyroscope, minus the wearer's baseline",
}


def current_specs() -> dict[int, str]:
    """Every spec id the firmware computes -> what it names."""
    names = {}
    for gyro in (True, False):
        for baseline in (False, True):
            spec = F.spec_for(gyro, baseline)[0]
            names[spec] = (f"feature set {F.FEATURE_VERSION} with{'' if gyro else 'out'} the gyroscope"
                           + (", minus the wearer's baseline" if baseline else ""))
    return names


def describe_spec(spec: int) -> str:
    """A feature-spec id in words, e.g. 'feature set 2 with the gyroscope (spec 7)'."""
    current = current_specs()
    if spec in current:
        return f"{current[spec]} (spec {spec})"
    if spec in RETIRED:
        return f"{RETIRED[spec]} (spec {spec}, retired)"
    return f"an unknown feature set (spec {spec})"


def require_current(spec: int, n_features: int, has_gyro: bool | None = None, board: str | None = None) -> None:
    """Refuse a model the watch would refuse for its features (reason E_FEATURE_MISMATCH).

    Parameters:
        spec, n_features: the blob's feature-spec id and feature count.
        has_gyro: the target board computes the gyroscope features; None when not known (then
            only a retired or unknown id is refused).
        board: the board's name, for the message.

    Raises:
        ModelBlobError: naming the model's feature set and the one the watch computes.
    """
    current = current_specs()
    if spec not in current:
        raise ModelBlobError(
            f"the model was made for {describe_spec(spec)}; watches running this firmware compute feature set "
            f"{F.FEATURE_VERSION} and refuse it (feature set does not match). Retrain it (`wears train`) or use "
            "a model made for this feature set, such as the shipped default", P.E_FEATURE_MISMATCH)
    if has_gyro is None:
        return
    accepted = [F.spec_for(has_gyro, baseline) for baseline in (False, True)]
    if (spec, n_features) not in accepted:
        computes = describe_spec(accepted[0][0])
        raise ModelBlobError(f"the model needs {describe_spec(spec)} with {n_features} features; "
                             f"{board or 'the board'} computes {computes} with {accepted[0][1]} features",
                             P.E_FEATURE_MISMATCH)
