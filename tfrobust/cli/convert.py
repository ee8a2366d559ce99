"""``tfrobust convert``: a saved tf_keras model -> .tflite (float, float16, dynamic, int8, binary)."""

from __future__ import annotations

from pathlib import Path

from absl import flags

FLAGS = flags.FLAGS

flags.DEFINE_string("model", None, "Saved tf_keras model: .keras, .h5 or a SavedModel folder.")
flags.DEFINE_enum("mode", "float", ["float", "float16", "dynamic", "int8", "binary"],
                  "Conversion mode (int8 = full integer with int8 input/output).")
flags.DEFINE_string("out", None, "Output .tflite path (written atomically).")
flags.DEFINE_enum("dataset", None, ["fashion_mnist", "mnist"],
                  "Calibration images for --mode=int8/binary (the first --calibration_size training images).")
flags.DEFINE_integer("calibration_size", 300, "Calibration images.", lower_bound=1)
flags.DEFINE_string("data_dir", None, "Folder searched first for the dataset's IDX files.")
flags.DEFINE_integer("batch_size", None, "Fix the .tflite batch size (1 for microcontrollers).",
                     lower_bound=1)
flags.DEFINE_bool("allow_select_ops", False, "Allow Select TF ops (needs the Flex delegate on device).")
flags.DEFINE_string("report", None, "Also write a JSON report (size, ops, tensors, TFLM arena, latency).")
flags.mark_flags_as_required(["model", "out"])
flags.register_multi_flags_validator(
    ["mode", "dataset"], lambda f: f["mode"] not in ("int8", "binary") or f["dataset"] is not None,
    message="--mode=int8 and --mode=binary need --dataset for calibration")


def run() -> int:
    import importlib

    from tfrobust import data, tflite_tools, utils
    from tfrobust._keras import keras

    for module in ("tfrobust.layers",):  # registers tfrobust's serializable layers for load_model
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    path = Path(FLAGS.model)
    if not path.exists():
        raise FileNotFoundError(f"--model: no saved model at {str(path)!r}")
    model = keras.models.load_model(str(path), compile=False)
    calibration = None
    if FLAGS.dataset is not None:
        calibration, _ = data.load_dataset(FLAGS.dataset, "train", data_dir=FLAGS.data_dir,
                                           limit=FLAGS.calibration_size)
    model_bytes = tflite_tools.convert(model, FLAGS.mode, calibration, path=FLAGS.out,
                                       allow_select_ops=FLAGS.allow_select_ops, batch_size=FLAGS.batch_size)
    print(f"wrote {FLAGS.out}: {len(model_bytes):,} bytes ({FLAGS.mode})")
    if FLAGS.report:
        report = tflite_tools.model_report(model_bytes, model=model)
        report["mode"] = FLAGS.mode
        utils.atomic_write_json(FLAGS.report, report)
        print(f"report: {FLAGS.report}")
    return 0
