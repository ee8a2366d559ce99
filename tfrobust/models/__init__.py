"""Architecture builders sized for 28x28 / 32x32 images; every builder returns logits.

``get(name, **kwargs)`` builds any registered model; ``names()`` lists them; ``register`` adds
one. The one exception to "logits" is ``capsnet``, whose scores are capsule lengths (see its
docstring). ``__all__`` is the registry, every builder of docs/models.md, and the defended models
(``DEFENSES``, ``defended_cnn``, ``defended_resnet``).
"""

from tfrobust.models._basic import lenet_300_100, madry_cnn, small_cnn
from tfrobust.models._binary_zoo import binary_cnn, binary_madry_cnn, binary_small_cnn
from tfrobust.models._classic import alexnet, bn_inception, googlenet, inception_v3, vgg
from tfrobust.models._defended import DEFENSES, defended_cnn, defended_resnet
from tfrobust.models._efficient import mobilenet, shufflenet, squeezenet
from tfrobust.models._mcu import mcu_cnn
from tfrobust.models._registry import get, names, register
from tfrobust.models._residual import (
    cbam_resnet,
    densenet,
    nf_resnet,
    preact_resnet,
    residual_attention,
    resnet,
    resnext,
    se_resnet,
)
from tfrobust.models._special import capsnet, mlp_mixer, stn, vit

__all__ = [
    "DEFENSES",
    "defended_cnn",
    "defended_resnet",
    "alexnet",
    "binary_cnn",
    "binary_madry_cnn",
    "binary_small_cnn",
    "bn_inception",
    "capsnet",
    "cbam_resnet",
    "densenet",
    "get",
    "googlenet",
    "inception_v3",
    "lenet_300_100",
    "madry_cnn",
    "mcu_cnn",
    "mlp_mixer",
    "mobilenet",
    "names",
    "nf_resnet",
    "preact_resnet",
    "register",
    "residual_attention",
    "resnet",
    "resnext",
    "se_resnet",
    "shufflenet",
    "small_cnn",
    "squeezenet",
    "stn",
    "vgg",
    "vit",
]
