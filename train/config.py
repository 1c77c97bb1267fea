"""TrainConfig: everything a run needs, as frozen dataclasses; ``--set key=value`` overrides on top."""
from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
from pathlib import Path

from ffnkv.config import INT_MAX, ModelConfig, check_fields, ints, reals
from ffnkv.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """A task for ``ffnkv.data.make_task(kind, **kwargs)``."""

    kind: str = "condcomp"
    kwargs: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):  # the kwargs are checked by the task they build (ffnkv.data.make_task)
        check_fields(self, "data.")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW (Loshchilov & Hutter 2019) with linear warmup to ``lr`` then cosine decay to ``lr * end_lr_frac``;
    gradients clipped to global norm ``clip_norm``; weight decay on weight matrices and embeddings only."""

    lr: float = 3e-3  # peak learning rate, reached after warmup_steps
    warmup_steps: int = 100
    end_lr_frac: float = 0.1  # the cosine ends at lr * end_lr_frac
    weight_decay: float = 0.01
    b1: float = 0.9  # Adam's moment decays
    b2: float = 0.98
    clip_norm: float = 1.0  # global gradient-norm clip

    def __post_init__(self):
        check_fields(self, "optim.", _OPTIM_RULES)


_OPTIM_RULES = {"lr": reals(0, 10, lo_open=True), "warmup_steps": ints(0), "end_lr_frac": reals(0, 1),
                "weight_decay": reals(0, 100), "b1": reals(0, 1, hi_open=True), "b2": reals(0, 1, hi_open=True),
                "clip_norm": reals(0, 1e9, lo_open=True)}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A training run. ``model.vocab_size`` is taken from the task; ``model.max_len`` is raised to its seq_len.

    ``mesh`` is (data, model) device counts; -1 on the data axis means all devices left.
    """

    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    steps: int = 1000
    batch_size: int = 128  # sequences per step, split over the mesh's data axis
    # every so many steps: evaluate, checkpoint (keeping the newest ``keep``), log the train loss
    eval_every: int = 100
    ckpt_every: int = 200
    keep: int = 3
    log_every: int = 10
    seed: int = 0  # initialisation and data order
    seeds: int = 1  # S seeds in one program: seed i (0 <= i < S) trains with seed + i for its init and data order
    seed_batch: int | None = None  # seeds vmapped together; the program loops (lax.map) over such groups; None: all S
    mesh: tuple[int, int] = (-1, 1)
    progress: bool = True

    def __post_init__(self):
        check_fields(self, "TrainConfig.", _TRAIN_RULES)
        if self.seed + self.seeds > 2 ** 32:
            raise ConfigError(f"TrainConfig.seeds={self.seeds!r} is not allowed with seed={self.seed}; "
                              "use seed + seeds <= 2**32.")
        object.__setattr__(self, "mesh", tuple(self.mesh))

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """JSON-ready: tuples become lists. ``seeds`` (when 1) and ``seed_batch`` (when None) are left out, so a
        single-seed run's config.json (and checkpoint metadata) is what it was before seeds existed and older run
        dirs still resume."""
        values = json.loads(json.dumps(dataclasses.asdict(self)))
        if self.seeds == 1:
            del values["seeds"]
        if self.seed_batch is None:
            del values["seed_batch"]
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        if not isinstance(values, dict):
            raise ConfigError(f"a training config must be a dict of TrainConfig fields, not {values!r}.")
        values = dict(values)
        _check_known(cls, values, "TrainConfig")
        if "model" in values:
            values["model"] = ModelConfig.from_dict(values["model"])
        if "data" in values:
            _check_known(DataConfig, values["data"], "data")
            values["data"] = DataConfig(**values["data"])
        if "optim" in values:
            _check_known(OptimConfig, values["optim"], "optim")
            values["optim"] = OptimConfig(**values["optim"])
        return cls(**values)


_TRAIN_RULES = {name: ints(1) for name in ("steps", "batch_size", "eval_every", "ckpt_every", "keep", "log_every")} | {
    "seed": ints(0, 2 ** 32 - 1), "seeds": ints(1, 4096), "seed_batch": ints(1, 4096),
    "mesh": (lambda m: (m[0] == -1 or 1 <= m[0] <= INT_MAX) and 1 <= m[1] <= INT_MAX,
             "(data, model) device counts like (-1, 1) or (8, 1)")}


def _check_known(cls, values: dict, where: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where} has no field {unknown[0]!r}; known fields: {', '.join(sorted(known))}.")


def parse_value(text: str):
    """A Python literal (``3``, ``1e-3``, ``(2, 3)``, ``None``, ``True``), else the text as a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply ``key=value`` overrides with dotted keys: ``steps=500``, ``model.ffn=gelu``, ``data.modulus=13``.

    ``data.<name>`` other than ``data.kind`` sets a task argument (checked when the task is built).
    """
    values = cfg.to_dict() | {"seeds": cfg.seeds, "seed_batch": cfg.seed_batch}
    given = set()  # the data fields the overrides set
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r} is malformed; write it as key=value, e.g. --set model.ffn=gelu.")
        path, value = key.strip().split("."), parse_value(text.strip())
        if len(path) == 2 and path[0] == "data" and path[1] != "kind":
            path = ["data", "kwargs", path[1]]
        node = values
        for depth, part in enumerate(path[:-1]):
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(path[:depth + 1])!r} is not a config section; "
                                  "sections are model, data, optim.")
            node = node[part]
        if path[-1] not in node and path[:2] != ["data", "kwargs"]:
            raise ConfigError(f"--set {item!r}: unknown key {key.strip()!r}; known here: {', '.join(sorted(node))}.")
        if isinstance(node.get(path[-1]), dict) and path[:2] != ["data", "kwargs"]:
            raise ConfigError(f"--set {item!r}: {key.strip()!r} is a config section, not a value; set one of its "
                              f"fields, e.g. --set {key.strip()}.{sorted(node[path[-1]])[0]}=….")
        node[path[-1]] = list(value) if isinstance(value, tuple) else value
        if path[:2] == ["data", "kwargs"]:
            given.add(path[-1])
    _one_source(values["data"], given)
    return TrainConfig.from_dict(values)


def _one_source(data: dict, given: set) -> None:
    """A task whose ``ONE_OF`` fields are alternatives (text: files, array_record, tfds_name): the one an
    override sets replaces the config's, so ``--set data.array_record=…`` needs no ``--set data.files=[]``.
    Two set together are left for the task to refuse."""
    from ffnkv.data import task_class

    one_of = getattr(task_class(data.get("kind", "condcomp")), "ONE_OF", ())
    if len(given & set(one_of)) == 1:
        for name in set(one_of) - given:
            data["kwargs"].pop(name, None)


PRESETS = {"condcomp": "condcomp.py", "facts": "facts_lm.py", "text": "text_lm.py"}
CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"


def load_config_file(path: str | Path) -> TrainConfig:
    """Run ``get_config()`` of a Python config file (e.g. ``configs/condcomp.py``), or of the file a preset
    name stands for (``PRESETS``: ``condcomp``, ``facts``, ``text`` → ``configs/*.py``)."""
    path = Path(path)
    if not path.is_file():
        if str(path) in PRESETS:
            return load_config_file(CONFIGS_DIR / PRESETS[str(path)])
        raise ConfigError(f"config file {str(path)!r} does not exist; pass a Python file with get_config() or "
                          f"a preset name ({', '.join(PRESETS)}).")
    spec = importlib.util.spec_from_file_location(f"ffnkv_config_{path.stem}", path)
    if spec is None:
        raise ConfigError(f"config file {str(path)!r} is not a Python file; pass a .py file with get_config().")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        if not hasattr(module, "get_config"):
            raise ConfigError(f"config file {str(path)!r} has no get_config() function.")
        cfg = module.get_config()
    except ConfigError:
        raise
    except Exception as error:  # a config file is user code: any failure in it is a user mistake
        raise ConfigError(f"config file {str(path)!r} failed to load: {_describe(error)}; fix the file.") from None
    if not isinstance(cfg, TrainConfig):
        raise ConfigError(f"get_config() in {str(path)!r} must return a train.config.TrainConfig.")
    return cfg


def _describe(error: Exception) -> str:
    """``SyntaxError at line 3: invalid syntax`` / ``ModuleNotFoundError: No module named 'x'``."""
    if isinstance(error, SyntaxError):
        return f"{type(error).__name__} at line {error.lineno}: {error.msg}"
    text = str(error).splitlines()[0][:200] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def resolve(cfg: TrainConfig):
    """Build the task and fit the model to it: returns (cfg with vocab_size/max_len set, task).

    A task read from a content-keyed cache (text) gets its ``cache_dir`` pinned in the config, so a run names
    the very corpus it was trained on: once the source files change, re-running the run is refused as a
    different config and reading it back fails in one line, instead of silently using another tokenizer.
    """
    from ffnkv.data import make_task

    task = make_task(cfg.data.kind, **cfg.data.kwargs)
    model = cfg.model.replace(vocab_size=int(task.vocab_size), max_len=max(cfg.model.max_len, int(task.seq_len)))
    cache_dir = getattr(task, "cache_dir", None)
    if isinstance(cache_dir, str) and "cache_dir" not in cfg.data.kwargs:
        cfg = cfg.replace(data=DataConfig(cfg.data.kind, {**cfg.data.kwargs, "cache_dir": cache_dir}))
    return cfg.replace(model=model), task
