"""Ship a model and re-check it on the deployed artefact: TFLite conversion, LiteRT and TFLite Micro
runs, C-array export and deployment reports.

* :func:`convert` - float / float16 / dynamic / int8 / binary .tflite, builtin ops only by default;
* :func:`diagnose_quantization`, :func:`int8_agreement` - which layers int8 hurts, measured remedies;
* :class:`TFLiteModel` - a .tflite as a float-in, logits-out ``model_fn`` (LiteRT);
* :func:`evaluate_deployed` - clean accuracy and transferred-attack accuracy on the .tflite;
* :func:`tflm_check`, :func:`find_arena_size`, :func:`tflm_parity`, :func:`tflm_missing_ops` -
  TFLite Micro: missing kernels with their layers, smallest arena, output parity with LiteRT;
* :func:`check_budget` - weight bytes and TFLM arena of a deployed file against a microcontroller
  budget (:class:`BudgetError` names what is over and by how much);
* :func:`export_c` - ``.h``/``.cc`` pair for firmware;
* :func:`generate_c` / :func:`export_binary_c` / :func:`run_on_host` - bit-packed binary networks
  as portable C99 (XNOR + popcount), and :func:`bake_binary_to_int8` for the stock int8 path;
* :func:`model_report`, :func:`report_markdown` - size, gzip size, tensors, ops, arena, latency;
  :func:`kernel_stats` - per-layer kernel bytes, sparsity and distinct values read from the file;
* :func:`compress_lut`, :func:`lut_parity` - TFLite Micro look-up-table compression of clustered
  kernels (2-4 bit indices) and its bit-exactness check in TFLM.
"""

from tfrobust.tflite_tools._binary_int8 import (
    bake_binary_to_int8,
    binary_weight_report,
    unit_binary_weights,
)
from tfrobust.tflite_tools._bitpack import (
    BinaryCProgram,
    export_binary_c,
    generate_c,
    pack_bits,
    run_on_host,
    unpack_bits,
)
from tfrobust.tflite_tools._bitpack_runner import BitpackRunner, CompileError
from tfrobust.tflite_tools._budget import BudgetError, check_budget, weight_bytes
from tfrobust.tflite_tools._convert import UnsupportedOpsError, convert
from tfrobust.tflite_tools._diagnostics import diagnose_quantization, int8_agreement
from tfrobust.tflite_tools._evaluate import evaluate_deployed
from tfrobust.tflite_tools._export import export_c
from tfrobust.tflite_tools._flatbuffer import kernel_stats
from tfrobust.tflite_tools._lut import compress_lut, lut_parity
from tfrobust.tflite_tools._micro import find_arena_size, run_tflm, tflm_check, tflm_missing_ops, tflm_parity
from tfrobust.tflite_tools._report import model_report, report_markdown
from tfrobust.tflite_tools._runtime import TFLiteModel

# What a user calls. Result types (TFLMCheck, KernelInfo, DeployedEvaluation, ...) come back from
# these functions and stay in their modules, as does the latency helper behind model_report.
__all__ = [
    # convert and run
    "convert",
    "UnsupportedOpsError",
    "TFLiteModel",
    "evaluate_deployed",
    "diagnose_quantization",
    "int8_agreement",
    # TFLite Micro and the microcontroller budget
    "tflm_check",
    "find_arena_size",
    "tflm_parity",
    "tflm_missing_ops",
    "run_tflm",
    "check_budget",
    "BudgetError",
    "weight_bytes",
    "export_c",
    # what is in the file
    "model_report",
    "report_markdown",
    "kernel_stats",
    "compress_lut",
    "lut_parity",
    # binary networks (docs/binary.md)
    "bake_binary_to_int8",
    "binary_weight_report",
    "unit_binary_weights",
    "generate_c",
    "export_binary_c",
    "run_on_host",
    "pack_bits",
    "unpack_bits",
    "BinaryCProgram",
    "BitpackRunner",
    "CompileError",
]
