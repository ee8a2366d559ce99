"""Architecture builders sized for 28x28 / 32x32 images; every builder returns logits.

``get(name, **kwargs)`` builds any registered model; ``names()`` lists them.
"""

from tfrobust.models._basic import lenet_300_100, madry_cnn, small_cnn
from tfrobust.models._registry import get, names, register

__all__ = ["get", "lenet_300_100", "madry_cnn", "names", "register", "small_cnn"]
