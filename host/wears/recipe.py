"""Training recipes: one TOML file names the data, windows, features, models and evaluation.

Example (training/recipes/wesad-valence.toml)::

    name = "wesad-valence"
    [labels]
    mapping = { amusement = "pleasant", stress = "unpleasant" }
    classes = ["unpleasant", "pleasant"]
    [windows]
    length_s = 60
    step_s = 5

Every key has a default (RECIPE_DEFAULTS); unknown keys are an error, so a typo never
silently changes an experiment.
"""

from __future__ import annotations

import copy
import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

from watch import features as F

from .errors import WearsError

FEATURE_GROUPS = {
    "hr": F.FEATURE_NAMES[:F.HR_COLUMNS],
    "acc": F.FEATURE_NAMES[F.ACC_COLUMN:F.GYRO_COLUMN],
    "gyro": F.GYRO_FEATURES,
}

RECIPE_DEFAULTS: dict = {
    "name": "unnamed",
    "data": {"study": "", "sessions": []},  # sessions: [] = every complete session
    "labels": {"mapping": {"pleasant": "pleasant", "unpleasant": "unpleasant"},
               "classes": ["unpleasant", "pleasant"], "margin_s": 0.0},
    "windows": {"length_s": 60, "step_s": 5, "keep": "trusted"},  # keep: trusted | all (flags become features)
    "features": {"groups": ["hr", "acc", "gyro"], "normalise": "none", "baseline_label": "baseline",
                 "baseline_windows": 12},
    "models": {"candidates": ["extratrees", "mlp", "logreg", "majority"], "deploy": "extratrees",
               "class_weight": "balanced",  # or "none": macro-F1 counts every class alike
               "extratrees": {"n_estimators": [10, 20, 30], "max_depth": [4, 6, 8], "min_samples_leaf": [5]},
               "mlp": {"hidden": [[8], [16], [16, 8]], "alpha": [0.1, 1.0, 10.0], "max_iter": 500},
               "logreg": {"C": [0.1, 1.0]}},
    "budget": {"max_blob_bytes": 20000, "max_hidden_units": 32, "max_depth": 8},
    "evaluation": {"protocol": "auto", "folds": 5, "inner_folds": 3, "inner_repeats": 1, "inner_score": "fold_mean", "random_split": False, "ablation": True,
                   "seed": 0, "lopo_max_participants": 12},
}


@dataclass
class Recipe:
    """A parsed recipe: `settings` holds every section with the defaults filled in."""

    path: Path | None
    settings: dict
    sha256: str

    def __getitem__(self, section: str) -> dict:
        return self.settings[section]

    @property
    def name(self) -> str:
        return self.settings["name"]

    @property
    def mapping(self) -> dict[str, int]:
        """Annotation label -> class index."""
        classes = self["labels"]["classes"]
        return {label: classes.index(cls) for label, cls in self["labels"]["mapping"].items()}


def _merge(defaults: dict, given: dict, where: str) -> dict:
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        if key not in defaults:
            raise WearsError(f"recipe: unknown key {where}{key}")
        if isinstance(defaults[key], dict) and key not in ("mapping",):
            if not isinstance(value, dict):
                raise WearsError(f"recipe: {where}{key} must be a table")
            out[key] = _merge(defaults[key], value, f"{where}{key}.")
        else:
            out[key] = value
    return out


def parse_recipe(text: str, path: Path | None = None) -> Recipe:
    """A recipe from TOML text; raises WearsError on a bad key or value."""
    try:
        given = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise WearsError(f"recipe {path or ''}: {e}") from e
    settings = _merge(RECIPE_DEFAULTS, given, "")
    labels = settings["labels"]
    for label, cls in labels["mapping"].items():
        if cls not in labels["classes"]:
            raise WearsError(f"recipe: labels.mapping sends {label!r} to {cls!r}, not one of labels.classes")
    if len(labels["classes"]) < 2:
        raise WearsError("recipe: labels.classes needs at least two classes")
    w = settings["windows"]
    if not (isinstance(w["length_s"], int) and isinstance(w["step_s"], int) and w["step_s"] > 0
            and w["length_s"] % w["step_s"] == 0 and 0 < w["length_s"] <= F.MAX_WINDOW_S):
        raise WearsError(f"recipe: windows.length_s must be a multiple of step_s and at most {F.MAX_WINDOW_S}")
    if w["keep"] not in ("trusted", "all"):
        raise WearsError("recipe: windows.keep is 'trusted' or 'all'")
    bad = set(settings["features"]["groups"]) - set(FEATURE_GROUPS)
    if bad or not settings["features"]["groups"]:
        raise WearsError(f"recipe: features.groups must be among {sorted(FEATURE_GROUPS)}")
    if settings["features"]["normalise"] not in ("none", "baseline"):
        raise WearsError("recipe: features.normalise is 'none' or 'baseline'")
    known = {"extratrees", "mlp", "logreg", "majority", "auto"}
    models = settings["models"]
    if set(models["candidates"]) - known or models["deploy"] not in ("extratrees", "mlp", "auto"):
        raise WearsError(f"recipe: models.candidates among {sorted(known)}; deploy extratrees, mlp or auto")
    if models["deploy"] not in models["candidates"]:
        raise WearsError("recipe: models.deploy must be one of models.candidates "
                         "(\"auto\" too: it chooses between extratrees and mlp inside each training fold)")
    if settings["models"]["class_weight"] not in ("balanced", "none"):
        raise WearsError("recipe: models.class_weight is 'balanced' or 'none'")
    if settings["evaluation"]["inner_score"] not in ("fold_mean", "pooled"):
        raise WearsError("recipe: evaluation.inner_score is 'fold_mean' or 'pooled'")
    if not (isinstance(settings["evaluation"]["inner_repeats"], int) and settings["evaluation"]["inner_repeats"] >= 1):
        raise WearsError("recipe: evaluation.inner_repeats is a whole number of at least 1")
    if settings["evaluation"]["protocol"] not in ("auto", "lopo", "group-kfold", "random"):
        raise WearsError("recipe: evaluation.protocol is auto, lopo, group-kfold or random")
    if settings["evaluation"]["protocol"] == "random" and not settings["evaluation"]["random_split"]:
        raise WearsError("recipe: a random split puts one person in training and test; "
                         "set evaluation.random_split = true to ask for it explicitly")
    return Recipe(path, settings, hashlib.sha256(text.encode()).hexdigest())


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise WearsError(f"cannot read the recipe {path}: {e.strerror}") from e
    return parse_recipe(text, path)
