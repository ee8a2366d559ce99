"""``tfrobust pipeline``: train -> evaluate -> compress -> convert -> deploy_eval -> export_c -> report.

The README's main job. Every stage writes its artefacts atomically and ``stages/<stage>.json``;
``--resume`` continues an interrupted run from the first unfinished stage (with the same
settings: a mismatch is refused). ``--flagfile=FILE`` (absl) reproduces a run; the settings,
seeds and versions are recorded in ``report.json``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

from absl import flags

from tfrobust.models import DEFENSES, names

FLAGS = flags.FLAGS

flags.DEFINE_string("out", "runs/pipeline", "Run folder (artefacts, report.md, report.json, plots/).")
flags.DEFINE_bool("resume", False, "Continue an interrupted run in --out from its first unfinished stage.")
flags.DEFINE_enum("stop_after", None, ["train", "evaluate", "compress", "convert", "deploy_eval",
                                       "export_c"], "Stop after this stage (resume later with --resume).")
flags.DEFINE_enum("dataset", "fashion_mnist", ["fashion_mnist", "mnist"], "Dataset.")
flags.DEFINE_enum("model", "small_cnn", names(), "Architecture (used when --defense=none).")
flags.DEFINE_enum("defense", "none", sorted(DEFENSES), "Defense inserted in the small CNN.")
flags.DEFINE_enum("adv", "fgsm_rs", ["none", "fgsm", "fgsm_rs", "pgd", "trades"], "Adversarial training.")
flags.DEFINE_float("eps", 0.1, "L-inf radius for training and evaluation.", lower_bound=0.0)
flags.DEFINE_integer("epochs", 3, "Training epochs.", lower_bound=1)
flags.DEFINE_integer("batch_size", 128, "Batch size.", lower_bound=1)
flags.DEFINE_float("lr", 1e-3, "Adam learning rate.", lower_bound=0.0)
flags.DEFINE_integer("train_subset", None, "Use the first N training images.", lower_bound=1)
flags.DEFINE_integer("eval_subset", 1000, "Test images used for the robust evaluations.", lower_bound=1)
flags.DEFINE_list("eps_curve", ["0", "0.025", "0.05", "0.075", "0.1", "0.15"], "Eps values of the curves.")
flags.DEFINE_float("prune_sparsity", 0.5, "Magnitude-pruning sparsity (0 disables pruning).",
                   lower_bound=0.0, upper_bound=0.99)
flags.DEFINE_integer("finetune_epochs", 1, "Fine-tuning epochs after pruning and for QAT (with the --adv "
                     "training attack).", lower_bound=1)
flags.DEFINE_bool("qat", True, "Quantization-aware fine-tuning before int8 conversion.")
flags.DEFINE_bool("binary", False, "Also convert to the binary int8 format (needs binary-weight layers: "
                  "--model=binary_small_cnn or binary_madry_cnn).")
flags.DEFINE_integer("gradient_free_examples", 20, "Images attacked by the one-pixel attack on the "
                     "int8 interpreter (0 disables).", lower_bound=0)
flags.DEFINE_integer("seed", 0, "Seed of every random choice.", lower_bound=0)
flags.DEFINE_string("data_dir", None, "Folder searched first for the dataset.")


def _settings():
    from tfrobust.cli._pipeline_stages import Settings

    try:
        curve = tuple(float(v) for v in FLAGS.eps_curve)
    except ValueError as e:
        raise ValueError(f"--eps_curve must be comma-separated numbers. Received: {FLAGS.eps_curve}") from e
    if any(v < 0 for v in curve):
        raise ValueError(f"--eps_curve values must be >= 0. Received: {FLAGS.eps_curve}")
    if FLAGS.eps not in curve:
        curve = tuple(sorted((*curve, FLAGS.eps)))
    return Settings(dataset=FLAGS.dataset, model=FLAGS.model, defense=FLAGS.defense, adv=FLAGS.adv,
                    eps=FLAGS.eps, epochs=FLAGS.epochs, batch_size=FLAGS.batch_size, lr=FLAGS.lr,
                    train_subset=FLAGS.train_subset, eval_subset=FLAGS.eval_subset, eps_curve=curve,
                    prune_sparsity=FLAGS.prune_sparsity, finetune_epochs=FLAGS.finetune_epochs,
                    qat=FLAGS.qat, binary=FLAGS.binary, gradient_free_examples=FLAGS.gradient_free_examples,
                    seed=FLAGS.seed, data_dir=FLAGS.data_dir)


def _check_binary(settings):
    """``--binary`` bakes binary-weight layers into int8; refuse a model without them up front
    (not after the training stage)."""
    if not settings.binary:
        return
    from tfrobust import data, models
    from tfrobust.layers import BinaryConv2D, BinaryDense

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


def run() -> int:
    from tfrobust import utils
    from tfrobust.cli._pipeline_report import stage_report
    from tfrobust.cli._pipeline_stages import STAGE_FUNCTIONS, STAGES, WEIGHTS, Context

    settings = _settings()
    _check_binary(settings)
    out = Path(FLAGS.out)
    state_path = out / "pipeline_state.json"
    fingerprint = _fingerprint(settings)
    if state_path.exists():
        state = json.loads(state_path.read_text())
        if not FLAGS.resume:
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
    functions = {**STAGE_FUNCTIONS, "report": stage_report}
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()  # identical figures when a run is resumed
    start = time.perf_counter()
    spent_weight = 0.0
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
        if FLAGS.stop_after == stage:
            print(f"stopped after {stage} (--stop_after); continue with --resume", flush=True)
            return 0
    report = (out / "report.md").resolve()
    print(f"pipeline finished in {_fmt(time.perf_counter() - start)}", flush=True)
    print(f"report: {report}", flush=True)
    sys.stdout.flush()
    return 0
