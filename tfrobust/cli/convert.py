"""``tfrobust convert``: a saved tf_keras model -> .tflite (float, float16, dynamic, int8, binary).

``--lut_bits=4`` then stores the kernels of a clustered model (``tfrobust compress
--method=cluster --cluster_bits=4``) as 4-bit indices + value tables for TFLite Micro, and checks
on the calibration images that TFLM computes bit-identical outputs with and without compression.
"""

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
flags.DEFINE_integer("lut_bits", None, "TFLite Micro LUT weight compression of a clustered model "
                     "(at most 2**lut_bits values per kernel or output channel); needs --mode=int8 "
                     "--batch_size=1. The file then runs in TFLite Micro only.", lower_bound=1,
                     upper_bound=7)
flags.DEFINE_string("report", None, "Also write a JSON report (size, ops, tensors, TFLM arena, latency).")
flags.DEFINE_float("agreement_threshold", 0.98, "After an int8/binary conversion, warn (and diagnose the "
                   "layers int8 hurts) when the file agrees with the Keras model on fewer test images.",
                   lower_bound=0.0, upper_bound=1.0)
flags.mark_flags_as_required(["model", "out"])
flags.register_multi_flags_validator(
    ["mode", "dataset"], lambda f: f["mode"] not in ("int8", "binary") or f["dataset"] is not None,
    message="--mode=int8 and --mode=binary need --dataset for calibration")
flags.register_multi_flags_validator(
    ["lut_bits", "mode", "batch_size"],
    lambda f: f["lut_bits"] is None or (f["mode"] == "int8" and f["batch_size"] == 1),
    message="--lut_bits needs --mode=int8 and --batch_size=1 (a TFLite Micro model)")


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
    model_bytes = tflite_tools.convert(model, FLAGS.mode, calibration,
                                       path=FLAGS.out if FLAGS.lut_bits is None else None,
                                       allow_select_ops=FLAGS.allow_select_ops, batch_size=FLAGS.batch_size)
    plain = model_bytes
    if FLAGS.lut_bits is not None:
        model_bytes = tflite_tools.compress_lut(plain, bits=FLAGS.lut_bits)
        check = tflite_tools.lut_parity(plain, model_bytes, calibration[:20])
        if not check["identical"]:
            raise RuntimeError(f"TFLite Micro outputs changed after LUT compression (max difference "
                               f"{check['max_abs_diff']:g} LSB); nothing written. "
                               f"Received: --lut_bits={FLAGS.lut_bits}")
        utils.atomic_write_bytes(FLAGS.out, model_bytes)
        print(f"LUT ({FLAGS.lut_bits}-bit indices): weights {check['weight_bytes']:,} -> "
              f"{check['compressed_weight_bytes']:,} bytes, file {len(plain):,} -> {len(model_bytes):,} "
              f"bytes; TFLite Micro outputs identical on {check['examples']} images")
    print(f"wrote {FLAGS.out}: {len(model_bytes):,} bytes ({FLAGS.mode})")
    if FLAGS.mode in ("int8", "binary"):
        # LiteRT cannot run a LUT file's TFLM_DECODE op; the LUT file is bit-exact with the plain
        # int8 file in TFLite Micro (checked above), so the plain file's agreement is the LUT file's.
        _check_agreement(model, plain, calibration)
    if FLAGS.report:
        report = tflite_tools.model_report(model_bytes, model=model)
        report["mode"] = FLAGS.mode
        report["lut_bits"] = FLAGS.lut_bits
        utils.atomic_write_json(FLAGS.report, report)
        print(f"report: {FLAGS.report}")
    return 0


def _check_agreement(model, model_bytes, calibration, examples: int = 500) -> None:
    """Print the int8 file's agreement with the Keras model; below the threshold, say which layers
    lose most and what each remedy would give (:func:`tfrobust.tflite_tools.diagnose_quantization`)."""
    from tfrobust import data, tflite_tools

    x, _ = data.load_dataset(FLAGS.dataset, "test", data_dir=FLAGS.data_dir, limit=examples)
    agreement = tflite_tools.int8_agreement(model, model_bytes, x)
    print(f"int8 agreement with the Keras model: {agreement:.4f} on {len(x)} test images")
    if agreement >= FLAGS.agreement_threshold:
        return
    print(f"warning: int8 changed {100 * (1 - agreement):.1f}% of the predictions (below "
          f"--agreement_threshold={FLAGS.agreement_threshold}); diagnosing the layers and remedies:")
    pool, _ = data.load_dataset(FLAGS.dataset, "train", data_dir=FLAGS.data_dir,
                                limit=4 * FLAGS.calibration_size)
    diagnosis = tflite_tools.diagnose_quantization(model, calibration, x, model_bytes=model_bytes,
                                                   calibration_pool=pool)
    print(diagnosis.to_markdown())
