"""Compression: TF-MOT pruning / QAT / clustering made safe, JPnet, Deep Compression, lottery
tickets, structured (unit) pruning with Scratch-E/B baselines, low-rank factorisation, and
(re-exported from ``tfrobust.layers``) binarization -- each reporting accuracy and robust
accuracy before and after.

TF-MOT is imported lazily and only in a process started with ``TF_USE_LEGACY_KERAS=1`` (see
``tfrobust/compression/_tfmot.py``); the other techniques do not need it.

``__all__`` is what a user calls (one entry point per technique, its result type, and the
loading scopes); the building blocks (k-means, Huffman coding, masks, unit importance, QAT
configs, ...) stay importable from their modules.
"""

from tfrobust.compression._deep_compression import DeepCompressionResult, deep_compress, load_stream_weights
from tfrobust.compression._deep_compression import decode as decode_stream
from tfrobust.compression._evaluate import compare_before_after, evaluate_model
from tfrobust.compression._joint_pruning import (
    ActivationThreshold,
    JointPruningResult,
    MACReport,
    count_macs,
    joint_prune,
)
from tfrobust.compression._lottery import LotteryResult, lottery_ticket
from tfrobust.compression._lowrank import FactorizationReport, factorize
from tfrobust.compression._masks import kernel_layers
from tfrobust.compression._pruning import (
    SparsityReport,
    model_size,
    prune,
    prune_scope,
    pruning_callbacks,
    save,
    sparsity_report,
    strip,
)
from tfrobust.compression._quantization import cluster, quantize, quantize_scope, register_quantize_config
from tfrobust.compression._structured import (
    IterativePruningResult,
    ScratchResult,
    UnitPruningResult,
    prune_units,
    prune_units_iteratively,
    scratch_baselines,
)
from tfrobust.layers import binarize_model  # binarization (helper "binary")

__all__ = [
    # magnitude pruning (TF-MOT)
    "prune",
    "pruning_callbacks",
    "strip",
    "prune_scope",
    "sparsity_report",
    "SparsityReport",
    "model_size",
    "save",
    # quantization-aware training and weight clustering (TF-MOT)
    "quantize",
    "quantize_scope",
    "register_quantize_config",
    "cluster",
    # Deep Compression
    "deep_compress",
    "DeepCompressionResult",
    "decode_stream",
    "load_stream_weights",
    # joint weight + activation pruning (JPnet)
    "joint_prune",
    "JointPruningResult",
    "ActivationThreshold",
    "count_macs",
    "MACReport",
    # lottery tickets, structured (unit) pruning, low rank
    "lottery_ticket",
    "LotteryResult",
    "prune_units",
    "prune_units_iteratively",
    "scratch_baselines",
    "UnitPruningResult",
    "IterativePruningResult",
    "ScratchResult",
    "factorize",
    "FactorizationReport",
    # binarization and the before / after report
    "binarize_model",
    "kernel_layers",
    "compare_before_after",
    "evaluate_model",
]
