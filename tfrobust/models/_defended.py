"""``defended_cnn``: the small CNN with one of tfrobust's defenses inserted where its paper puts it."""

from __future__ import annotations

from tfrobust._keras import keras
from tfrobust.layers import (
    ChannelActivationSuppressing,
    ChannelImportanceFeatureSelection,
    KWinnersTakeAll,
    NoisyWeights,
    PrunedWeights,
    RandomNoisyActivations,
    RandomScaledActivations,
    StochasticActivationPruning,
    WTADropout,
    label_conditioned_pair,
)
from tfrobust.losses import PrototypeConformity
from tfrobust.models._checks import check_input_shape, check_num_classes, check_positive_int

layers = keras.layers

#: defense name -> where it acts and its settings (documented in docs/defenses.md).
DEFENSES = {
    "none": "plain small CNN (ReLU)",
    "kwta": "k-WTA (k = 20%) replaces every ReLU",
    "sap": "SAP (r = 100% of units) after every ReLU, also at inference",
    "rna": "RNA (s = 0.1) after every ReLU",
    "rsa": "RSA (s = 0.2) after every ReLU",
    "rnw": "RNW (s = 0.01) on every kernel",
    "rsw": "RSW (s = 0.2) on every kernel",
    "dwp": "DWP keeping 50% of each kernel",
    "swp": "SWP with r = 50% of each kernel's weights",
    "wta_dropout": "WTA dropout keeping 50% of channels after each conv ReLU, k-WTA 50% on the dense layer",
    "cas": "CAS (beta = 2) on the penultimate (dense) features",
    "cifs": "CIFS (beta = 2, linear probe) on the penultimate (dense) features",
    "pcl": "PCL (weight 0.1, push weight 1e-4 as the official code) on the penultimate features",
}

_LABELLED = ("cas", "cifs", "pcl")


def _activation(defense, name):
    if defense == "kwta":
        return KWinnersTakeAll(k=0.2, name=f"{name}_kwta")
    relu = layers.ReLU(name=f"{name}_relu")
    extra = {
        "sap": lambda: StochasticActivationPruning(ratio=1.0, name=f"{name}_sap"),
        "rna": lambda: RandomNoisyActivations(stddev=0.1, name=f"{name}_rna"),
        "rsa": lambda: RandomScaledActivations(stddev=0.2, name=f"{name}_rsa"),
    }.get(defense)
    if extra is None:
        return relu
    second = extra()
    return lambda h: second(relu(h))


def _wrap(defense, layer):
    if defense == "rnw":
        return NoisyWeights(layer, mode="additive", stddev=0.01)
    if defense == "rsw":
        return NoisyWeights(layer, mode="multiplicative", stddev=0.2)
    if defense == "dwp":
        return PrunedWeights(layer, mode="deterministic", keep=0.5)
    if defense == "swp":
        return PrunedWeights(layer, mode="stochastic", keep=0.5)
    return layer


def defended_cnn(
    defense: str = "kwta",
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    width: int = 32,
    dense_units: int = 128,
    return_train_model: bool = False,
    name: str | None = None,
):
    """Build ``small_cnn`` (conv 3x3 x2 with max-pool, dense, logits) with ``defense`` inserted.

    Args:
      defense: one of :data:`DEFENSES`.
      input_shape, num_classes, width, dense_units: as in ``small_cnn``.
      return_train_model: also return the label-conditioned training model. CAS, CIFS and PCL
        need the labels during training (``[x, y] -> logits``); for the other defenses the
        training model is the model itself.
      name: model name (default ``"cnn_<defense>"``).

    Returns:
      The inference model ``x -> logits``, or ``(train_model, model)`` when
      ``return_train_model=True`` (fit ``train_model`` on ``((x, y), y)`` for CAS/CIFS/PCL).
    """
    if defense not in DEFENSES:
        raise ValueError(
            f"Unknown defense. Expected one of {sorted(DEFENSES)}. Received: defense={defense!r}"
        )
    input_shape = check_input_shape(input_shape)
    num_classes = check_num_classes(num_classes)
    check_positive_int("width", width)
    check_positive_int("dense_units", dense_units)
    name = name or f"cnn_{defense}"
    conv1 = _wrap(defense, layers.Conv2D(width, 3, padding="same", name="conv1"))
    conv2 = _wrap(defense, layers.Conv2D(2 * width, 3, padding="same", name="conv2"))
    fc1 = _wrap(defense, layers.Dense(dense_units, name="fc1"))
    head = layers.Dense(num_classes, name="logits")
    act1, act2, act3 = (_activation(defense, n) for n in ("act1", "act2", "act3"))
    if defense == "wta_dropout":
        act1 = _chain(layers.ReLU(name="act1_relu"), WTADropout(keep=0.5, name="act1_wta"))
        act2 = _chain(layers.ReLU(name="act2_relu"), WTADropout(keep=0.5, name="act2_wta"))
        act3 = _chain(
            layers.ReLU(name="act3_relu"), WTADropout(keep=0.5, structure="element", name="act3_wta")
        )
    pool1, pool2, flat = (
        layers.MaxPooling2D(2, name="pool1"),
        layers.MaxPooling2D(2, name="pool2"),
        layers.Flatten(name="flatten"),
    )
    cond = {
        "cas": lambda: ChannelActivationSuppressing(num_classes, beta=2.0, name="cas"),
        "cifs": lambda: ChannelImportanceFeatureSelection(num_classes, beta=2.0, name="cifs"),
        "pcl": lambda: PrototypeConformity(num_classes, weight=0.1, name="pcl"),
    }.get(defense, lambda: None)()

    def build(x, y):
        h = pool1(act1(conv1(x)))
        h = act2(conv2(h))
        h = act3(fc1(flat(pool2(h))))
        if cond is not None:  # on the penultimate features, as the papers' last block
            h = cond([h, y]) if y is not None else cond(h)
        return head(h)

    if defense in _LABELLED:
        train_model, model = label_conditioned_pair(build, input_shape, name=name)
    else:
        inp = keras.Input(input_shape, name="image")
        model = train_model = keras.Model(inp, build(inp, None), name=name)
    return (train_model, model) if return_train_model else model


def _chain(*fns):
    def run(h):
        for fn in fns:
            h = fn(h)
        return h

    return run
