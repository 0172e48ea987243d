"""RunConfig: one run (stream, training, steering, audit) as plain data, read from YAML or JSON.

``load_run_config(path, overrides)`` layers defaults <- files (in order) <- overrides (the
caller's explicit choices: command-line flags, keyword arguments), refusing unknown keys with the
closest known one suggested. A file is either sectioned (``stream:``, ``train:``, ``steer:``,
``audit:``) or flat, as ``fairgen train --config`` has always read it (training fields with
``spec`` for a card file and ``stream`` for an inline card). Each field's help text is its
``metadata["help"]``, which the command line shows. Importing this module does not import torch.
"""

from __future__ import annotations

import difflib
import json
import warnings
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from plumbing.validation import is_int

from .contrastive.config import TrainConfig

MAX_YAML_BYTES = 1 << 20  # a run config is a page of settings; a bigger file is refused unread
SECTIONS = ("stream", "train", "steer", "audit")
ALIASES = {"steps": "total_steps"}  # a file (and the command line) may say steps


def _field(default, help_text: str, factory=None):
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help_text})
    return field(default=default, metadata={"help": help_text})


def _check_int(where: str, name: str, value, low: int) -> None:
    if not is_int(value) or value < low:
        raise ValueError(f"{where} {name} must be an integer >= {low}, got {value!r}")


@dataclass
class StreamSettings:
    """Where a run's batches come from: a stream card, or a stream made anew from these settings."""

    spec: str | None = _field(None, "stream card (JSON) from `fairgen stream --new`")
    card: dict | None = _field(
        None, "the stream card inline (its files named relative to the config's folder)"
    )
    source: str = _field(
        "generator",
        "without a card: 'generator' (a stream made with the views and augment below) or a "
        "plug-in's data source (the world demo: real-biased, real-balanced)",
    )
    views: dict | None = _field(None, "view recipe of a stream made anew (default: the library's)")
    augment: str | dict = _field("light", "augmentation of a stream made anew (preset or recipe)")
    steered: bool = _field(False, "steer a stream made anew with the card the steer section fits")
    seed: int = _field(0, "seed of a stream made anew (and of a data source's draws)")
    n: int | None = _field(None, "samples of a finite data source (the demo's balanced split)")

    def __post_init__(self):
        if self.spec is not None and self.card is not None:
            raise ValueError("stream: give spec (a card file) or card (inline), not both")
        _check_int("stream", "seed", self.seed, 0)
        if self.n is not None:
            _check_int("stream", "n", self.n, 1)


@dataclass
class TrainSettings(TrainConfig):
    """``TrainConfig`` and the run's own keys: the global batch and the kNN monitor."""

    batch_size: int = _field(256, "global batch: anchors per step over all processes")
    knn_every: int = _field(
        0,
        "steps between kNN accuracies of the encoder on held-out generated images, logged to "
        "metrics.jsonl (0: never)",
    )
    knn_n: int = _field(1000, "held-out images of each kNN split")

    def __post_init__(self):
        super().__post_init__()
        if not is_int(self.batch_size):
            raise ValueError(f"batch_size must be an integer >= 2, got {self.batch_size!r}")
        if self.batch_size < 2:
            raise ValueError(
                "batch_size must be an integer >= 2 (a contrastive batch needs negatives), "
                f"got {self.batch_size!r}"
            )
        _check_int("train", "knn_every", self.knn_every, 0)
        _check_int("train", "knn_n", self.knn_n, 1)

    def train_config(self, **changes) -> TrainConfig:
        """The ``TrainConfig`` part (what ``Trainer`` takes), with ``changes``."""
        names = {f.name for f in fields(TrainConfig)}
        return TrainConfig(**{k: v for k, v in asdict(self).items() if k in names} | changes)


@dataclass
class SteerSettings:
    """How a run fits its steering card (``steering.fit_steerer``), when it fits one."""

    n: int = _field(20_000, "labelled samples the steerer is fitted on")
    mode: str = _field("balance", "balance, flip or erase")
    method: str | None = _field(None, "steering method (default: the best measured for the mode)")
    seed: int = _field(0, "seed of the labelled samples")

    def __post_init__(self):
        _check_int("steer", "n", self.n, 1)
        _check_int("steer", "seed", self.seed, 0)


@dataclass
class AuditSettings:
    """How a run audits its encoder and stream (sizes, permutations, bootstrap)."""

    seed: int = _field(0, "seed of the audit splits, permutations and bootstrap")
    n_probe: int = _field(4000, "labelled images the target probe is fitted on")
    n_test: int = _field(4000, "balanced test images")
    stream_n: int = _field(4000, "stream samples judged for the stream's Cramer's V")
    n_permutations: int = _field(99, "permutations of the leakage test")
    n_bootstrap: int = _field(300, "bootstrap resamples of each interval")
    leakage_pca: int | None = _field(32, "PCA width inside each leakage CV fold (None: none)")
    leakage_max_iter: int = _field(100, "iterations of each leakage probe fit")
    eraser_n: int = _field(4096, "images a feature eraser is fitted on")
    erased_permutations: int = _field(0, "permutations of the erased features' leakage test")

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not (f.name == "leakage_pca" and value is None):
                _check_int("audit", f.name, value, 0)


@dataclass
class RunConfig:
    """One run: its stream, training, steering and audit settings."""

    stream: StreamSettings = _field(None, "where batches come from", StreamSettings)
    train: TrainSettings = _field(None, "the contrastive trainer", TrainSettings)
    steer: SteerSettings = _field(None, "fitting the steering card", SteerSettings)
    audit: AuditSettings = _field(None, "auditing the encoder and stream", AuditSettings)

    def to_dict(self) -> dict:
        return asdict(self)


SECTION_TYPES = {
    "stream": StreamSettings,
    "train": TrainSettings,
    "steer": SteerSettings,
    "audit": AuditSettings,
}


def field_help(cls) -> dict[str, tuple[str, object]]:
    """``{field: (help, default)}`` of a settings dataclass, for ``--help`` and the docs."""
    out = {}
    for f in fields(cls):
        default = f.default if f.default is not MISSING else f.default_factory()
        out[f.name] = (f.metadata.get("help", ""), default)
    return out


def load_run_config(
    path=None, overrides: dict | None = None, base: dict | None = None
) -> RunConfig:
    """A ``RunConfig`` from defaults <- ``base`` <- the file(s) at ``path`` <- ``overrides``.

    ``path``: a YAML or JSON file, or a list of them (later files win key by key). ``overrides``
    and ``base`` take the same form as a file (sectioned or flat); ``base`` is a resumed run's
    settings. Naming a stream card one way (``spec`` or ``card``) drops the other from earlier
    layers. A warm-up the caller asks for (``overrides``) that is longer than the run is refused;
    one from a default or a file is shortened to the run's length, with a warning."""
    paths = [] if path is None else list(path) if isinstance(path, list | tuple) else [path]
    layers = [("resumed run", base or {})]
    layers += [(f"run config {p}", read_run_file(p)) for p in paths]
    layers.append(("overrides", overrides or {}))
    merged = {name: {} for name in SECTIONS}
    for where, data in layers:
        for name, values in sectioned(data, where).items():
            if name == "stream" and {"spec", "card"} & set(values):
                merged["stream"].pop("spec" if "card" in values else "card", None)
            merged[name].update(values)
    train = merged["train"]
    train["augment"] = _augment_recipe(train.get("augment", "light"))
    asked = sectioned(overrides or {}, "overrides")["train"].get("warmup_steps")
    _fit_warmup(train, asked, resumed=bool(base))
    return RunConfig(**{name: SECTION_TYPES[name](**merged[name]) for name in SECTIONS})


def read_run_file(path) -> dict:
    """A run config file: strict JSON (``.json``) or YAML (``yaml.safe_load``), size-capped."""
    from plumbing.files import read_json

    path = Path(path)
    if path.suffix.lower() == ".json":
        data = read_json(path, "run config")
    else:
        if not path.is_file():
            raise FileNotFoundError(f"run config {path} does not exist")
        if path.stat().st_size > MAX_YAML_BYTES:
            raise ValueError(f"run config {path} is larger than {MAX_YAML_BYTES} bytes")
        import yaml

        try:
            data = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise ValueError(f"run config {path} is not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"run config {path} must hold a mapping of settings, got {type(data)}")
    return data


def sectioned(data: dict, where: str) -> dict[str, dict]:
    """``data`` as ``{section: {field: value}}``: a sectioned mapping as it is, a flat one (training
    fields, ``spec``, ``stream`` for an inline card) sorted into sections; unknown keys refused."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping of settings, got {type(data).__name__}")
    flat_stream = isinstance(data.get("stream"), dict) and "generator" in data["stream"]
    if data and set(data) <= set(SECTIONS) and not flat_stream:
        out = {}
        for name, values in data.items():
            if not isinstance(values, dict):
                raise ValueError(f"{where}: section {name!r} must be a mapping of settings")
            out[name] = {
                _known(SECTION_TYPES[name], k, f"{where}: {name}"): v for k, v in values.items()
            }
        return {name: out.get(name, {}) for name in SECTIONS}
    out = {name: {} for name in SECTIONS}
    for key, value in data.items():
        if key == "spec":
            out["stream"]["spec"] = value
        elif key == "stream":
            out["stream"]["card"] = value
        else:
            extra = ("spec", "stream", *SECTIONS)
            out["train"][_known(TrainSettings, key, where, extra)] = value
    return out


def _known(cls, key, where: str, extra=()) -> str:
    """``key`` (or the field its alias names) if ``cls`` has it; else a ValueError suggesting
    one."""
    names = [f.name for f in fields(cls)]
    key = ALIASES.get(key, key) if cls is TrainSettings else key
    if key in names:
        return key
    close = difflib.get_close_matches(str(key), [*names, *extra, *ALIASES], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"{where}: unknown keys [{key!r}]{hint} (known: {', '.join(names)})")


def _fit_warmup(train: dict, asked, resumed: bool) -> None:
    """Refuse a warm-up the caller asked for that outlasts the run; shorten (and say so) one
    that came from a default or a file; warn when the warm-up fills the whole run."""
    steps = train.get("total_steps", TrainConfig.total_steps)
    warmup = train.get("warmup_steps", TrainConfig.warmup_steps)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (steps, warmup)):
        return  # TrainConfig names the bad value
    if asked is not None and warmup > steps:
        raise ValueError(
            f"warmup_steps {warmup} is longer than the run's {steps} steps; "
            "give fewer warm-up steps than steps"
        )
    if warmup >= steps and not resumed:
        train["warmup_steps"] = min(warmup, steps)
        warnings.warn(
            f"the warm-up ({warmup} steps) covers the whole run of {steps} steps: it is "
            f"{'shortened to ' + str(steps) + ' and ' if warmup > steps else ''}the learning rate "
            "only rises, never decays; set warmup_steps below the steps",
            UserWarning,
            stacklevel=3,
        )


def _augment_recipe(value):
    """A preset name stays a name; inline JSON or a .json file becomes the recipe dict."""
    if not isinstance(value, str) or not (
        value.lstrip().startswith("{") or value.endswith(".json")
    ):
        return value
    try:
        return json.loads(value if value.lstrip().startswith("{") else Path(value).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(
            f"augment {value!r}: expected a preset name, inline JSON or a JSON file ({error})"
        ) from None
