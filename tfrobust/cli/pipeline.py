"""``tfrobust pipeline``: train -> evaluate -> compress -> convert -> deploy_eval -> export_c -> report.

``--target=mcu`` runs the microcontroller job instead (``tfrobust/cli/_pipeline_mcu.py``): choose
the widest ``mcu_cnn`` inside ``--max_weight_bytes`` / ``--max_arena_bytes``, train it robustly,
convert it, check the budgets on the deployed file, attack the deployed file, frontier, C export.

The README's main job. Every stage writes its artefacts atomically and ``stages/<stage>.json``;
``--resume`` continues an interrupted run from the first unfinished stage (with the same
settings: a mismatch is refused). ``--flagfile=FILE`` (absl) reproduces a run; the settings,
seeds and versions are recorded in ``report.json``.

Python: ``run(Config(out="runs/p", train_subset=2000, epochs=1, eval_subset=100))`` runs the same
stages and returns ``{"out", "target", "settings", "finished", "stopped_after", "report",
"stage_seconds", "results"}`` (``results``: each finished stage's ``stages/<stage>.json``).
``Config.settings()`` resolves the target's defaults into the settings the stages read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

import tensorflow as tf

from tfrobust import _validate as V
from tfrobust import data, models, utils
from tfrobust.cli import _common, _pipeline_mcu, _pipeline_report, _pipeline_stages
from tfrobust.cli import _flags as F
from tfrobust.cli._flags import setting
from tfrobust.cli._pipeline_mcu import MCUSettings
from tfrobust.cli._pipeline_stages import Context, Settings
from tfrobust.layers import BinaryConv2D, BinaryDense

TARGETS = {"default": (_pipeline_stages, _pipeline_report.stage_report),
           "mcu": (_pipeline_mcu, _pipeline_mcu.stage_report_mcu)}
#: Every stage ``--stop_after`` accepts (each target checks its own; ``report`` is the last anyway).
STOPPABLE = tuple(s for s in dict.fromkeys(("choose", *_pipeline_stages.STAGES, *_pipeline_mcu.STAGES))
                  if s != "report")
#: The defaults of each target: the settings dataclasses hold them (declared there once).
DEFAULT = {f.name: f.default for f in dataclasses.fields(Settings)}
MCU = {f.name: f.default for f in dataclasses.fields(MCUSettings)}
#: Settings of the default target that --target=mcu does not use (given: refused).
NOT_MCU = ("model", "defense", "eps_curve", "prune_sparsity", "gradient_free_examples")
#: Settings only --target=mcu uses (given with the default target: refused).
ONLY_MCU = ("max_weight_bytes", "max_arena_bytes", "width", "apgd_steps", "square_queries", "frontier",
            "frontier_subset", "guard_examples")
#: Settings whose default depends on the target.
BY_TARGET = ("epochs", "lr", "qat")


def _show(value):
    if value is None or value == ():
        return "none"
    return ",".join(f"{v:g}" for v in value) if isinstance(value, tuple) else value


def _target_setting(name: str, help: str, *, choices=None):  # noqa: A002 -- absl's word
    """A setting left None ("not given") until :meth:`Config.settings` fills in the target's
    default: the targets differ in it, or one target does not take it (and refuses it when given)."""
    if name in BY_TARGET:
        where = f"default {_show(DEFAULT[name])}; --target=mcu: {_show(MCU[name])}"
    elif name in ONLY_MCU:
        where = f"--target=mcu only; default {_show(MCU[name])}"
    else:
        where = f"default {_show(DEFAULT[name])}; not with --target=mcu"
    return setting(None, f"{help} ({where}).", choices=choices)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(_common.DataConfig):
    """Settings of ``tfrobust pipeline`` (each is also a flag of the same name).

    A setting left None takes its target's default (:meth:`settings`); one the chosen target does
    not take is refused when given.
    """

    out: str = setting("runs/pipeline", "Run folder (artefacts, report.md, report.json, plots/).")
    resume: bool = setting(False, "Continue an interrupted run in --out from its first unfinished stage.")
    stop_after: str | None = setting(None, "Stop after this stage (resume later with --resume).",
                                     choices=STOPPABLE)
    target: str = setting("default", "default: the Keras model of --model, shipped as int8 for phones and "
                          "TFLite Micro; mcu: a robust model inside a microcontroller budget "
                          "(--max_weight_bytes, --max_arena_bytes).", choices=tuple(TARGETS))
    # Both targets.
    adv: str = setting(DEFAULT["adv"], "Adversarial training.",
                       choices=("none", "fgsm", "fgsm_rs", "pgd", "trades"))
    eps: float = setting(DEFAULT["eps"], "L-inf radius for training and evaluation.")
    batch_size: int = setting(DEFAULT["batch_size"], "Batch size.")
    train_subset: int | None = setting(DEFAULT["train_subset"], "Use the first N training images.")
    eval_subset: int = setting(DEFAULT["eval_subset"], "Test images used for the robust evaluations.")
    finetune_epochs: int = setting(DEFAULT["finetune_epochs"], "Fine-tuning epochs after pruning and for "
                                   "QAT (with the --adv training attack).")
    binary: bool = setting(DEFAULT["binary"], "Also convert to the binary int8 format (needs binary-weight "
                           "layers: --model=binary_small_cnn or binary_madry_cnn).")
    seed: int = setting(DEFAULT["seed"], "Seed of every random choice.")
    epochs: int | None = _target_setting("epochs", "Training epochs")
    lr: float | None = _target_setting("lr", "Adam learning rate")
    qat: bool | None = _target_setting("qat", "Quantization-aware fine-tuning before int8 conversion")
    # The default target only.
    model: str | None = _target_setting("model", "Architecture (used when --defense=none)",
                                        choices=models.names())
    defense: str | None = _target_setting("defense", "Defense inserted in the small CNN",
                                          choices=sorted(models.DEFENSES))
    eps_curve: tuple[float, ...] | None = _target_setting("eps_curve", "Eps values of the curves")
    prune_sparsity: float | None = _target_setting("prune_sparsity", "Magnitude-pruning sparsity (0 "
                                                   "disables pruning)")
    gradient_free_examples: int | None = _target_setting(
        "gradient_free_examples", "Images attacked by the one-pixel attack on the int8 interpreter (0 "
        "disables)")
    # --target=mcu only.
    max_weight_bytes: int | None = _target_setting("max_weight_bytes", "Weight bytes of the deployed file "
                                                   "(every constant buffer)")
    max_arena_bytes: int | None = _target_setting("max_arena_bytes", "TFLite Micro arena at batch 1")
    width: float | None = _target_setting("width", "mcu_cnn width multiplier (none: the widest that fits)")
    apgd_steps: int | None = _target_setting("apgd_steps", "APGD iterations of the deployed evaluation")
    square_queries: int | None = _target_setting("square_queries", "Square queries of the deployed "
                                                 "evaluation (0 skips Square)")
    frontier: tuple[str, ...] | None = _target_setting(
        "frontier", "Frontier variants of the trained model, e.g. prune0.25,prune0.5,prune0.75 "
        "(prune<fraction>: that fraction of every hidden layer's units removed, then fine-tuned and "
        "attacked as deployed; about 1.5 CPU-min each, benchmarks/mcu.py measures them); none: the "
        "shipped point only")
    frontier_subset: int | None = _target_setting("frontier_subset", "Evaluation images of the frontier "
                                                  "points")
    guard_examples: int | None = _target_setting("guard_examples", "Held-out training images of the "
                                                 "per-epoch PGD-10 guard against catastrophic overfitting")

    def __post_init__(self):
        _common.check_choices(self)
        _common.check_bounds(self, eps=(0.0, None), batch_size=(1, None), train_subset=(1, None),
                             eval_subset=(1, None), finetune_epochs=(1, None), seed=(0, None),
                             epochs=(1, None), lr=(0.0, None), prune_sparsity=(0.0, 0.99),
                             gradient_free_examples=(0, None), max_weight_bytes=(1, None),
                             max_arena_bytes=(1, None), apgd_steps=(1, None), square_queries=(0, None),
                             frontier_subset=(1, None), guard_examples=(1, None))
        for name in ("resume", "binary", "qat"):
            if getattr(self, name) is not None:
                V.boolean(name, getattr(self, name))
        if self.target == "mcu":
            self._check_mcu()
        else:
            given = [f"--{name}" for name in ONLY_MCU if getattr(self, name) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} need(s) --target=mcu. Received: --target={self.target}")
            if self.eps_curve is not None:
                object.__setattr__(self, "eps_curve", _eps_curve(self.eps_curve))
        stages = TARGETS[self.target][0].STAGES
        if self.stop_after is not None and self.stop_after not in stages:
            raise ValueError(f"--stop_after must be one of the stages of --target={self.target}: "
                             f"{list(stages[:-1])}. Received: --stop_after={self.stop_after}")

    def _check_mcu(self):
        given = [name for name in NOT_MCU if getattr(self, name) is not None]
        if given:
            raise ValueError(f"{', '.join(f'--{n}' for n in given)} do(es) not apply to --target=mcu (it "
                             "trains its own mcu_cnn and ships int8 without a defense layer or magnitude "
                             "pruning). Received: " + " ".join(f"--{n}={getattr(self, n)}" for n in given))
        if self.width is not None:
            object.__setattr__(self, "width", V.number("--width", self.width, minimum=0.0, open_min=True))
        if self.frontier is not None:
            object.__setattr__(self, "frontier", _frontier(self.frontier))

    def settings(self) -> Settings:
        """The run's settings with the target's defaults filled in: what the stages read, what
        ``report.json`` records and what ``--resume`` compares (a :class:`MCUSettings` for
        ``target="mcu"``)."""
        common = {"dataset": self.dataset, "data_dir": self.data_dir, "adv": self.adv, "eps": float(self.eps),
                  "batch_size": self.batch_size, "train_subset": self.train_subset,
                  "eval_subset": self.eval_subset, "finetune_epochs": self.finetune_epochs,
                  "binary": self.binary, "seed": self.seed}
        if self.target == "mcu":
            mcu = {name: MCU[name] if getattr(self, name) is None else getattr(self, name)
                   for name in (*BY_TARGET, *ONLY_MCU)}
            mcu["lr"] = float(mcu["lr"])
            # The MCU job trains mcu_cnn, curves only at eps, never prunes by magnitude.
            return MCUSettings(**common, **mcu, model="mcu_cnn", eps_curve=(float(self.eps),),
                               prune_sparsity=0.0, gradient_free_examples=0)
        value = {name: DEFAULT[name] if getattr(self, name) is None else getattr(self, name)
                 for name in (*BY_TARGET, *NOT_MCU)}
        value["lr"], value["prune_sparsity"] = float(value["lr"]), float(value["prune_sparsity"])
        if self.eps not in value["eps_curve"]:
            value["eps_curve"] = tuple(sorted((*value["eps_curve"], float(self.eps))))
        return Settings(**common, **value)


def _items(value) -> list:
    """A list setting's items: a list flag's strings, a Python sequence, or a comma-separated string."""
    return value.split(",") if isinstance(value, str) else list(value)


def _eps_curve(value) -> tuple:
    try:
        curve = tuple(float(v) for v in _items(value))
    except (TypeError, ValueError) as e:
        raise ValueError(f"--eps_curve must be comma-separated numbers. Received: {value}") from e
    if any(v < 0 for v in curve):
        raise ValueError(f"--eps_curve values must be >= 0. Received: {value}")
    return curve


def _frontier(value) -> tuple:
    items = _items(value)
    frontier = tuple(str(v).strip() for v in items if str(v).strip())
    for name in frontier:
        fraction = name[len("prune"):] if name.startswith("prune") else ""
        try:
            ok = 0 < float(fraction) < 1
        except ValueError:
            ok = False
        if not ok:
            raise ValueError("--frontier items must be prune<fraction> with 0 < fraction < 1 (e.g. "
                             f"prune0.5). Received: --frontier={','.join(map(str, items))}")
    return frontier


def _check_binary(settings):
    """``--binary`` bakes binary-weight layers into int8; refuse a model without them up front
    (not after the training stage)."""
    if not settings.binary:
        return
    model_name = settings.model if settings.defense == "none" else f"defended_cnn({settings.defense})"
    bakeable = []
    if settings.defense == "none":
        info = data.dataset_info(settings.dataset)
        model = models.get(settings.model, input_shape=info.image_shape, num_classes=info.num_classes)
        bakeable = [layer.name for layer in model.layers
                    if isinstance(layer, (BinaryConv2D, BinaryDense)) and not layer.binary_inputs]
    if not bakeable:
        raise ValueError(
            "--binary converts binary-weight layers (BWN / BinaryConnect) to int8 +-1 kernels, and "
            f"--model={model_name} has none that qualify (XNOR layers binarize their inputs, which no "
            "stock int8 runtime can run). Fix: use --model=binary_small_cnn or --model=binary_madry_cnn "
            "(binary weights, real activations), or drop --binary. Received: "
            f"--model={settings.model} --defense={settings.defense} --binary")


def _fingerprint(settings) -> str:
    return hashlib.sha256(json.dumps(settings.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def _fmt(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


def run(config: Config) -> dict:
    """Run the target's stages into ``config.out`` (skipping finished ones with ``resume``).

    Turns on TensorFlow's op determinism for the process (a resumed run computes what a straight
    one does). Returns ``{"out", "target", "settings", "finished", "stopped_after", "report",
    "stage_seconds", "results"}``; ``results`` holds each finished stage's ``stages/<stage>.json``.

    Raises:
      ValueError: ``--binary`` without binary-weight layers; ``out`` holds a run and ``resume`` is
        False, or a run with other settings.
    """
    settings = config.settings()
    table, report_stage = TARGETS[config.target]
    if config.target == "default":
        _check_binary(settings)
    STAGES, WEIGHTS = table.STAGES, table.WEIGHTS
    out = Path(config.out)
    state_path = out / "pipeline_state.json"
    fingerprint = _fingerprint(settings)
    if state_path.exists():
        state = json.loads(state_path.read_text())
        if not config.resume:
            raise ValueError(f"{out} already holds a pipeline run; pass --resume to continue it or choose "
                             "another --out")
        if state["fingerprint"] != fingerprint:
            raise ValueError(f"--resume needs the settings of the interrupted run in {out} "
                             f"(recorded: {json.dumps(state['settings'], sort_keys=True)})")
    else:
        state = {"fingerprint": fingerprint, "settings": settings.to_dict(), "done": {}, "log": []}
    out.mkdir(parents=True, exist_ok=True)
    utils.atomic_write_json(state_path, state)
    ctx = Context(out, settings)
    functions = {**table.STAGE_FUNCTIONS, "report": report_stage}
    tf.config.experimental.enable_op_determinism()  # identical figures when a run is resumed
    start = time.perf_counter()
    spent_weight = 0.0
    stopped_after = None
    for i, stage in enumerate(STAGES, 1):
        if stage in state["done"] and (out / f"stages/{stage}.json").exists():
            print(f"[{i}/{len(STAGES)}] {stage}: done earlier, skipped", flush=True)
            state["log"].append({"stage": stage, "event": "skipped"})
            continue
        elapsed = time.perf_counter() - start
        remaining = sum(WEIGHTS[s] for s in STAGES[i - 1:])
        if spent_weight > 0:
            eta = f", about {_fmt(elapsed / spent_weight * remaining)} left"
        else:
            eta = ""
        print(f"[{i}/{len(STAGES)}] {stage} (elapsed {_fmt(elapsed)}{eta})", flush=True)
        t0 = time.perf_counter()
        # Each stage starts from its own seed, so a resumed run computes what a straight one does.
        utils.set_seed(settings.seed * 100 + i)
        result = functions[stage](ctx)
        seconds = time.perf_counter() - t0
        utils.atomic_write_json(out / f"stages/{stage}.json", result)
        spent_weight += WEIGHTS[stage]
        state["done"][stage] = round(seconds, 1)
        state["log"].append({"stage": stage, "event": "ran", "seconds": round(seconds, 1)})
        utils.atomic_write_json(state_path, state)
        if config.stop_after == stage:
            print(f"stopped after {stage} (--stop_after); continue with --resume", flush=True)
            stopped_after = stage
            break
    report = (out / "report.md").resolve()
    if stopped_after is None:
        print(f"pipeline finished in {_fmt(time.perf_counter() - start)}", flush=True)
        print(f"report: {report}", flush=True)
        sys.stdout.flush()
    return {"out": str(out), "target": config.target, "settings": settings.to_dict(),
            "finished": stopped_after is None, "stopped_after": stopped_after,
            "report": str(report) if stopped_after is None else None,
            "stage_seconds": dict(state["done"]),
            "results": {stage: ctx.stage_result(stage) for stage in STAGES
                        if stage in state["done"] and ctx.path(f"stages/{stage}.json").exists()}}


def main(argv=None) -> int:
    """absl layer: the parsed flags become a :class:`Config`."""
    del argv
    run(F.from_flags(Config))
    return 0
