"""tfrobust: robust and small image classifiers for Keras/TensorFlow.

Harden (defense layers, adversarial training), attack (white-box, black-box, adaptive), shrink
(pruning, quantization, binarization) and ship (TFLite, TFLite Micro) image classifiers, with
robust accuracy measured honestly at every stage.

The Keras used throughout is tf_keras (the Keras 2 API): ``from tfrobust import keras``.
"""

from tfrobust import (  # noqa: E402
    attacks,
    compression,
    data,
    evaluation,
    layers,
    losses,
    models,
    testing,
    tflite_tools,
    trainers,
    utils,
)
from tfrobust._keras import keras  # noqa: E402
from tfrobust._version import __version__  # noqa: E402
from tfrobust.data import as_tf_dataset, load_dataset  # noqa: E402

__all__ = [
    "__version__",
    "as_tf_dataset",
    "attacks",
    "compression",
    "data",
    "evaluation",
    "keras",
    "layers",
    "load_dataset",
    "losses",
    "models",
    "testing",
    "tflite_tools",
    "trainers",
    "utils",
]
