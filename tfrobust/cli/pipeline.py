"""``tfrobust pipeline``: train -> evaluate -> compress -> convert -> deploy_eval -> export_c -> report.

``--target=mcu`` runs the microcontroller job instead (``tfrobust/cli/_pipeline_mcu.py``): choose
the widest ``mcu_cnn`` inside ``--max_weight_bytes`` / ``--max_arena_bytes``, train it robustly,
convert it, check the budgets on the deployed file, attack the deployed file, frontier, C export.

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
flags.DEFINE_enum("stop_after", None, ["choose", "train", "evaluate", "compress", "convert", "deploy_eval",
                                       "frontier", "export_c"],
                  "Stop after this stage (resume later with --resume).")
flags.DEFINE_enum("target", "default", ["default", "mcu"], "default: the Keras model of --model, shipped as "
                  "int8 for phones and TFLite Micro; mcu: a robust model inside a microcontroller budget "
                  "(--max_weight_bytes, --max_arena_bytes).")
flags.DEFINE_integer("max_weight_bytes", 65536, "--target=mcu: weight bytes of the deployed file (every "
                     "constant buffer).", lower_bound=1)
flags.DEFINE_integer("max_arena_bytes", 32768, "--target=mcu: TFLite Micro arena at batch 1.", lower_bound=1)
flags.DEFINE_float("width", None, "--target=mcu: mcu_cnn width multiplier (default: the widest that fits).")
flags.DEFINE_integer("apgd_steps", 100, "--target=mcu: APGD iterations of the deployed evaluation.",
                     lower_bound=1)
flags.DEFINE_integer("square_queries", 5000, "--target=mcu: Square queries of the deployed evaluation "
                     "(0 skips Square).", lower_bound=0)
flags.DEFINE_list("frontier", [], "--target=mcu: frontier variants of the trained model, e.g. "
                  "prune0.25,prune0.5,prune0.75 (prune<fraction>: that fraction of every hidden layer's "
                  "units removed, then fine-tuned and attacked as deployed; about 1.5 CPU-min each); "
                  "empty (default): the shipped point only. benchmarks/mcu.py measures them.")
flags.DEFINE_integer("frontier_subset", 500, "--target=mcu: evaluation images of the frontier points.",
                     lower_bound=1)
flags.DEFINE_integer("guard_examples", 500, "--target=mcu: held-out training images of the per-epoch "
                     "PGD-10 guard against catastrophic overfitting.", lower_bound=1)
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


#: --target=mcu defaults where they differ from the default target's (measured in docs/mcu.md).
MCU_DEFAULTS = {"epochs": 12, "lr": 2e-3, "qat": False}
#: Flags of the default target that --target=mcu does not use (given explicitly: refused).
NOT_MCU = ("model", "defense", "eps_curve", "prune_sparsity", "gradient_free_examples")
ONLY_MCU = ("max_weight_bytes", "max_arena_bytes", "width", "apgd_steps", "square_queries", "frontier",
            "frontier_subset", "guard_examples")


def _mcu_settings():
    from tfrobust import _validate as V
    from tfrobust.cli._pipeline_mcu import MCUSettings

    given = [f"--{name}" for name in NOT_MCU if FLAGS[name].present]
    if given:
        raise ValueError(f"{', '.join(given)} do(es) not apply to --target=mcu (it trains its own mcu_cnn "
                         "and ships int8 without a defense layer or magnitude pruning). Received: "
                         + " ".join(f"--{n}={FLAGS[n].value}" for n in NOT_MCU if FLAGS[n].present))
    value = {name: FLAGS[name].value if FLAGS[name].present else default
             for name, default in MCU_DEFAULTS.items()}
    width = None if FLAGS.width is None else V.number("--width", FLAGS.width, minimum=0.0, open_min=True)
    frontier = tuple(v.strip() for v in FLAGS.frontier if v.strip())
    for name in frontier:
        fraction = name[len("prune"):] if name.startswith("prune") else ""
        try:
            ok = 0 < float(fraction) < 1
        except ValueError:
            ok = False
        if not ok:
            raise ValueError("--frontier items must be prune<fraction> with 0 < fraction < 1 (e.g. "
                             f"prune0.5). Received: --frontier={','.join(FLAGS.frontier)}")
    return MCUSettings(dataset=FLAGS.dataset, model="mcu_cnn", adv=FLAGS.adv, eps=FLAGS.eps,
                       epochs=value["epochs"], batch_size=FLAGS.batch_size, lr=value["lr"],
                       train_subset=FLAGS.train_subset, eval_subset=FLAGS.eval_subset, eps_curve=(FLAGS.eps,),
                       prune_sparsity=0.0, finetune_epochs=FLAGS.finetune_epochs, qat=value["qat"],
                       binary=FLAGS.binary, gradient_free_examples=0, seed=FLAGS.seed,
                       data_dir=FLAGS.data_dir,
                       max_weight_bytes=FLAGS.max_weight_bytes, max_arena_bytes=FLAGS.max_arena_bytes,
                       width=width, apgd_steps=FLAGS.apgd_steps, square_queries=FLAGS.square_queries,
                       frontier=frontier, frontier_subset=FLAGS.frontier_subset,
                       guard_examples=FLAGS.guard_examples)


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
    from tfrobust.cli import _pipeline_mcu, _pipeline_report, _pipeline_stages
    from tfrobust.cli._pipeline_stages import Context

    if FLAGS.target == "mcu":
        settings = _mcu_settings()
        table, report_stage = _pipeline_mcu, _pipeline_mcu.stage_report_mcu
    else:
        given = [f"--{name}" for name in ONLY_MCU if FLAGS[name].present]
        if given:
            raise ValueError(f"{', '.join(given)} need(s) --target=mcu. Received: --target={FLAGS.target}")
        settings = _settings()
        _check_binary(settings)
        table, report_stage = _pipeline_stages, _pipeline_report.stage_report
    STAGES, WEIGHTS = table.STAGES, table.WEIGHTS
    if FLAGS.stop_after is not None and FLAGS.stop_after not in STAGES:
        raise ValueError(f"--stop_after must be one of the stages of --target={FLAGS.target}: "
                         f"{list(STAGES[:-1])}. Received: --stop_after={FLAGS.stop_after}")
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
    functions = {**table.STAGE_FUNCTIONS, "report": report_stage}
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
