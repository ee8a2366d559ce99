"""``tfrobust convert``: a saved tf_keras model -> .tflite (float, float16, dynamic, int8, binary).

``--lut_bits=4`` then stores the kernels of a clustered model (``tfrobust compress
--method=cluster --cluster_bits=4``) as 4-bit indices + value tables for TFLite Micro, and checks
on the calibration images that TFLM computes bit-identical outputs with and without compression.

Python: ``run(Config(model="m.keras", mode="int8", dataset="fashion_mnist", out="m.tflite"))``
returns ``{"path", "bytes", "mode", ...}``.
"""

from __future__ import annotations

import dataclasses

from tfrobust import evaluation, tflite_tools, utils
from tfrobust.cli import _common
from tfrobust.cli import _flags as F
from tfrobust.cli._flags import setting

MODES = ("float", "float16", "dynamic", "int8", "binary")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(_common.DataConfig):
    """Settings of ``tfrobust convert`` (each is also a flag of the same name)."""

    model: str = setting(help="Saved tf_keras model: .keras, .h5 or a SavedModel folder.")
    out: str = setting(help="Output .tflite path (written atomically).")
    mode: str = setting("float", "Conversion mode (int8 = full integer with int8 input/output).",
                        choices=MODES)
    dataset: str | None = setting(None, "Calibration images for --mode=int8/binary (the first "
                                  "--calibration_size training images).", choices=_common.DATASETS)
    calibration_size: int = setting(300, "Calibration images.")
    batch_size: int | None = setting(None, "Fix the .tflite batch size (1 for microcontrollers).")
    allow_select_ops: bool = setting(False, "Allow Select TF ops (needs the Flex delegate on device).")
    lut_bits: int | None = setting(None, "TFLite Micro LUT weight compression of a clustered model (at "
                                   "most 2**lut_bits values per kernel or output channel); needs "
                                   "--mode=int8 --batch_size=1. The file then runs in TFLite Micro only.")
    report: str | None = setting(None, "Also write a JSON report (size, ops, tensors, TFLM arena, latency).")
    agreement_threshold: float = setting(0.98, "After an int8/binary conversion, warn (and diagnose the "
                                         "layers int8 hurts) when the file agrees with the Keras model "
                                         "on fewer test images.")

    def __post_init__(self):
        _common.check_choices(self)
        _common.check_bounds(self, calibration_size=(1, None), batch_size=(1, None), lut_bits=(1, 7),
                             agreement_threshold=(0.0, 1.0))
        if self.mode in ("int8", "binary") and self.dataset is None:
            raise ValueError("--mode=int8 and --mode=binary need --dataset for calibration. "
                             f"Received: mode={self.mode!r}, dataset=None")
        if self.lut_bits is not None and not (self.mode == "int8" and self.batch_size == 1):
            raise ValueError("--lut_bits needs --mode=int8 and --batch_size=1 (a TFLite Micro model). "
                             f"Received: mode={self.mode!r}, batch_size={self.batch_size}")


def run(config: Config) -> dict:
    """Convert, optionally LUT-compress, check int8 agreement; returns the file's figures."""
    _, model = evaluation.load_model_fn(config.model)
    calibration = None
    if config.dataset is not None:
        calibration, _ = _common.load_split(config, "train", config.calibration_size)
    model_bytes = tflite_tools.convert(model, config.mode, calibration,
                                       path=config.out if config.lut_bits is None else None,
                                       allow_select_ops=config.allow_select_ops, batch_size=config.batch_size)
    plain = model_bytes
    result = {"path": str(config.out), "mode": config.mode}
    if config.lut_bits is not None:
        model_bytes = tflite_tools.compress_lut(plain, bits=config.lut_bits)
        check = tflite_tools.lut_parity(plain, model_bytes, calibration[:20])
        if not check["identical"]:
            raise RuntimeError(f"TFLite Micro outputs changed after LUT compression (max difference "
                               f"{check['max_abs_diff']:g} LSB); nothing written. "
                               f"Received: --lut_bits={config.lut_bits}")
        utils.atomic_write_bytes(config.out, model_bytes)
        result["lut"] = check
        print(f"LUT ({config.lut_bits}-bit indices): weights {check['weight_bytes']:,} -> "
              f"{check['compressed_weight_bytes']:,} bytes, file {len(plain):,} -> {len(model_bytes):,} "
              f"bytes; TFLite Micro outputs identical on {check['examples']} images")
    result["bytes"] = len(model_bytes)
    print(f"wrote {config.out}: {len(model_bytes):,} bytes ({config.mode})")
    if config.mode in ("int8", "binary"):
        # LiteRT cannot run a LUT file's TFLM_DECODE op; the LUT file is bit-exact with the plain
        # int8 file in TFLite Micro (checked above), so the plain file's agreement is the LUT file's.
        result["int8_agreement"] = _check_agreement(config, model, plain, calibration)
    if config.report:
        report = tflite_tools.model_report(model_bytes, model=model)
        report["mode"] = config.mode
        report["lut_bits"] = config.lut_bits
        utils.atomic_write_json(config.report, report)
        print(f"report: {config.report}")
    return result


def _check_agreement(config, model, model_bytes, calibration, examples: int = 500) -> float:
    """Print the int8 file's agreement with the Keras model; below the threshold, say which layers
    lose most and what each remedy would give (:func:`tfrobust.tflite_tools.diagnose_quantization`)."""
    x, _ = _common.load_split(config, "test", examples)
    agreement = tflite_tools.int8_agreement(model, model_bytes, x)
    print(f"int8 agreement with the Keras model: {agreement:.4f} on {len(x)} test images")
    if agreement >= config.agreement_threshold:
        return agreement
    print(f"warning: int8 changed {100 * (1 - agreement):.1f}% of the predictions (below "
          f"--agreement_threshold={config.agreement_threshold}); diagnosing the layers and remedies:")
    pool, _ = _common.load_split(config, "train", 4 * config.calibration_size)
    diagnosis = tflite_tools.diagnose_quantization(model, calibration, x, model_bytes=model_bytes,
                                                   calibration_pool=pool)
    print(diagnosis.to_markdown())
    return agreement


def main(argv=None) -> int:
    """absl layer: the parsed flags become a :class:`Config`."""
    del argv
    run(F.from_flags(Config))
    return 0
