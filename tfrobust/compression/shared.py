"""Compression's building blocks, importable apart from the user API (an explicitly shared module).

Not what a user calls (that is :mod:`tfrobust.compression`): the pieces the techniques are built
from -- masks, the TF-MOT handle and its wrapped layers, QAT configs, JPnet's threshold insertion,
unit importance, k-means and Huffman coding, rank choice -- which their tests check one by one.
"""

from tfrobust.compression._deep_compression import Codebook, encode, kmeans_1d
from tfrobust.compression._huffman import huffman_code_lengths, huffman_decode, huffman_encode
from tfrobust.compression._joint_pruning import insert_activation_thresholds
from tfrobust.compression._lowrank import choose_rank
from tfrobust.compression._masks import magnitude_masks
from tfrobust.compression._pruning import wrapped_layers
from tfrobust.compression._quantization import output_quantize_config_class, quantize_config_for
from tfrobust.compression._structured import adjust_dropout_rate, apoz, unit_importance
from tfrobust.compression._tfmot import tfmot

__all__ = [
    "Codebook",
    "adjust_dropout_rate",
    "apoz",
    "choose_rank",
    "encode",
    "huffman_code_lengths",
    "huffman_decode",
    "huffman_encode",
    "insert_activation_thresholds",
    "kmeans_1d",
    "magnitude_masks",
    "output_quantize_config_class",
    "quantize_config_for",
    "tfmot",
    "unit_importance",
    "wrapped_layers",
]
