"""``defended_cnn`` and ``defended_resnet``: small networks with one of tfrobust's defenses inserted
where its paper puts it (CAS and CIFS: on the blocks you choose, one module per block)."""

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
from tfrobust.models._residual import _bn_relu, _check_block_args, _conv, _stages, residual_block
from tfrobust.models._zoo_utils import check_float

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
    "cas": "CAS (beta = 2) on the penultimate (dense) features; `at_blocks` adds conv blocks",
    "cifs": "CIFS (beta = 2, linear probe) on the penultimate (dense) features; `at_blocks` adds conv blocks",
    "pcl": "PCL (weight 0.1, push weight 1e-4 as the official code) on the penultimate features",
}

_LABELLED = ("cas", "cifs", "pcl")
_CHANNEL = ("cas", "cifs")

#: blocks of ``defended_cnn`` that can carry a CAS / CIFS module, in network order.
CNN_BLOCKS = ("conv1", "conv2", "dense")


def _check_placement(arg, value, allowed, defense):
    """``value`` (one item or a sequence of them, no repeats, all in ``allowed``) in network order."""
    if defense not in _CHANNEL:
        raise ValueError(f"`{arg}` places CAS or CIFS modules; defense {defense!r} has none. "
                         f"Received: {arg}={value!r}")
    items = (value,) if isinstance(value, (str, int)) else value
    try:
        items = tuple(items)
    except TypeError:
        items = ()
    if (not items or any(isinstance(a, bool) for a in items) or len(set(items)) != len(items)
            or not set(items) <= set(allowed)):
        raise ValueError(f"`{arg}` must be one or more distinct items of {allowed}. "
                         f"Received: {arg}={value!r}")
    return tuple(a for a in allowed if a in items)


def _check_beta(beta, defense):
    if beta is None:
        return 2.0
    if defense not in _CHANNEL:
        raise ValueError(f"`beta` weighs the CAS / CIFS probe losses; defense {defense!r} has none. "
                         f"Received: beta={beta!r}")
    return check_float("beta", beta, low_inclusive=True)


def _channel_module(defense, num_classes, beta, name):
    if defense == "cas":
        return ChannelActivationSuppressing(num_classes, beta=beta, name=name)
    return ChannelImportanceFeatureSelection(num_classes, beta=beta, name=name)


def _conditioned(layer, h, y):
    """A label-conditioned layer on the training path (``[h, y]``) or the inference path (``h``)."""
    return layer(h) if y is None else layer([h, y])


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
    at_blocks=None,
    beta: float | None = None,
    return_train_model: bool = False,
    name: str | None = None,
):
    r"""Build ``small_cnn`` (conv 3x3 x2 with max-pool, dense, logits) with ``defense`` inserted.

    CAS and CIFS go on the blocks named in ``at_blocks``: ``"conv1"`` and ``"conv2"`` (each conv
    block's output, conv -> ReLU -> 2x2 max-pool, an H x W x K map whose channels the module
    reweights) and ``"dense"`` (the penultimate features, the default). Each module has its own
    probe and adds its own term, so with modules :math:`m = 1..S` the training loss on a batch
    ``x'`` (adversarial in adversarial training) is, as in the CAS paper (Bai et al. 2021, Eq. 4;
    its official training scripts divide the summed probe losses by their number)

    .. math::
        L = \mathrm{CE}(f(x'), y) + \frac{\beta}{S} \sum_{m=1}^{S} L^m(x'),

    with :math:`L^m = -\log \hat p^m_y(x')` the cross-entropy of module m's probe (CAS:
    :math:`\mathrm{softmax}(\mathrm{GAP}(f^m)^\top M^m)`, CIFS: its probe network). At test
    time every module picks its channel mask from its own probe's prediction.

    Args:
      defense: one of :data:`DEFENSES`.
      input_shape, num_classes, width, dense_units: as in ``small_cnn``.
      at_blocks: CAS / CIFS only: one or more of :data:`CNN_BLOCKS` (a name or a sequence of
        names); None means ``("dense",)``. The dense module is named ``"cas"`` / ``"cifs"``, a
        conv block's ``"cas_conv1"``, ``"cifs_conv2"``, ...
      beta: CAS / CIFS only: the weight of the modules' averaged probe loss (default 2, the
        papers'); each of the S modules adds its own term with weight ``beta / S``.
      return_train_model: also return the label-conditioned training model. CAS, CIFS and PCL
        need the labels during training (``[x, y] -> logits``); for the other defenses the
        training model is the model itself.
      name: model name (default ``"cnn_<defense>"``).

    Returns:
      The inference model ``x -> logits``, or ``(train_model, model)`` when
      ``return_train_model=True`` (fit ``train_model`` on ``((x, y), y)`` for CAS/CIFS/PCL).

    Example:
      >>> train_model, model = defended_cnn("cas", at_blocks=("conv2", "dense"),  # doctest: +SKIP
      ...                                   return_train_model=True)
      >>> AdversarialTrainer((train_model, model), method="pgd", eps=0.1).fit(ds)  # doctest: +SKIP

    References:
      Bai et al., Improving Adversarial Robustness via Channel-wise Activation Suppressing, ICLR
      2021, https://openreview.net/forum?id=zQTezqCCtNx; Yan et al., CIFS, ICML 2021,
      https://arxiv.org/abs/2102.05311
    """
    if defense not in DEFENSES:
        raise ValueError(
            f"Unknown defense. Expected one of {sorted(DEFENSES)}. Received: defense={defense!r}"
        )
    input_shape = check_input_shape(input_shape)
    num_classes = check_num_classes(num_classes)
    check_positive_int("width", width)
    check_positive_int("dense_units", dense_units)
    beta = _check_beta(beta, defense)
    if at_blocks is not None:
        at_blocks = _check_placement("at_blocks", at_blocks, CNN_BLOCKS, defense)
    elif defense in _CHANNEL:
        at_blocks = ("dense",)
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
    modules = {}  # block -> its CAS / CIFS module, or PCL on the penultimate features
    if defense == "pcl":
        modules["dense"] = PrototypeConformity(num_classes, weight=0.1, name="pcl")
    for block in at_blocks or ():
        suffix = "" if block == "dense" else f"_{block}"  # "cas": the name before at_blocks existed
        modules[block] = _channel_module(defense, num_classes, beta / len(at_blocks), f"{defense}{suffix}")

    def at(block, h, y):
        return _conditioned(modules[block], h, y) if block in modules else h

    def build(x, y):
        h = at("conv1", pool1(act1(conv1(x))), y)
        h = at("conv2", pool2(act2(conv2(h))), y)
        h = at("dense", act3(fc1(flat(h))), y)
        return head(h)

    if defense in _LABELLED:
        train_model, model = label_conditioned_pair(build, input_shape, name=name)
    else:
        inp = keras.Input(input_shape, name="image")
        model = train_model = keras.Model(inp, build(inp, None), name=name)
    return (train_model, model) if return_train_model else model


#: defenses ``defended_resnet`` builds.
RESNET_DEFENSES = ("none", "cas", "cifs")


def defended_resnet(
    defense: str = "cas",
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    at_stages=None,
    beta: float | None = None,
    width: int = 16,
    blocks_per_stage=(1, 1, 1),
    block: str = "basic",
    return_train_model: bool = False,
    name: str | None = None,
):
    r"""A CIFAR-style ResNet (``tfrobust.models.resnet``) with CAS or CIFS after chosen stages.

    3x3 stem, stages of residual units (stride 1, 2, 2, ... with ``width * 2**s`` channels),
    global average pool, logits: the layers and names of ``resnet(width=..., blocks_per_stage=...,
    block=...)``. A CAS / CIFS module (named ``"cas_stage<s>"`` / ``"cifs_stage<s>"``) reweights
    the channels of the output of stage s's last unit for every s in ``at_stages`` (1-based);
    the papers put them on the last blocks of a ResNet-18, the default here is the last stage.
    Each module has its own probe and adds its own term: the training loss on a batch ``x'`` is

    .. math::
        L = \mathrm{CE}(f(x'), y) + \frac{\beta}{S} \sum_{s \in \text{at\_stages}} L^s(x'),

    with :math:`L^s` the cross-entropy of stage s's probe on the GAP of its feature map. At
    test time each module picks its mask from its own probe's prediction.

    Not in the model registry: like ``defended_cnn`` it needs its training model (the labels
    enter the graph), which a registry builder (``x -> logits`` trained with plain CE) cannot give.

    Args:
      defense: ``"cas"``, ``"cifs"`` or ``"none"`` (the same ResNet without a module, a baseline).
      input_shape, num_classes: as in every builder.
      at_stages: stage indices (1-based; an int or a sequence); None means the last stage. Must
        be None for ``defense="none"``.
      beta: the weight of the averaged probe loss (default 2): each of the S modules adds its
        term with weight ``beta / S``, as the CAS paper's Eq. 4.
      width, blocks_per_stage, block: as in ``tfrobust.models.resnet`` (post-activation units).
      return_train_model: return ``(train_model, model)``; fit ``train_model`` on
        ``((x, y), y)`` (or pass the pair to ``AdversarialTrainer``), attack and deploy ``model``.
      name: model name (default ``"resnet_<defense>"``).

    Returns:
      The inference model ``x -> logits``, or ``(train_model, model)``.

    Example:
      >>> pair = defended_resnet("cifs", at_stages=(2, 3), return_train_model=True)  # doctest: +SKIP
      >>> AdversarialTrainer(pair, method="pgd", eps=8 / 255).fit(ds)  # doctest: +SKIP

    References:
      Bai et al., ICLR 2021, https://openreview.net/forum?id=zQTezqCCtNx; Yan et al., ICML 2021,
      https://arxiv.org/abs/2102.05311; He et al., CVPR 2016, https://arxiv.org/abs/1512.03385
    """
    if defense not in RESNET_DEFENSES:
        raise ValueError(f"`defense` must be one of {RESNET_DEFENSES}. Received: defense={defense!r}")
    input_shape = check_input_shape(input_shape)
    num_classes = check_num_classes(num_classes)
    check_positive_int("width", width)
    _check_block_args(block, None)
    stages = _stages(blocks_per_stage)
    beta = _check_beta(beta, defense)
    indices = tuple(range(1, len(stages) + 1))
    if at_stages is not None:
        at_stages = _check_placement("at_stages", at_stages, indices, defense)
    elif defense in _CHANNEL:
        at_stages = indices[-1:]
    name = name or f"resnet_{defense}"
    modules = {s: _channel_module(defense, num_classes, beta / len(at_stages), f"{defense}_stage{s}")
               for s in at_stages or ()}
    expansion = 4 if block == "bottleneck" else 1
    bank = {}  # every layer made once, shared by the training and the inference graph
    gap = layers.GlobalAveragePooling2D(name="gap")
    head = layers.Dense(num_classes, name="logits")

    def build(x, y):
        h = _bn_relu(_conv(x, width, 3, name="stem_conv", bank=bank), "stem", bank)
        for s, n in enumerate(stages, start=1):
            for b in range(n):
                h = residual_block(h, width * 2 ** (s - 1) * expansion,
                                   strides=2 if (s > 1 and b == 0) else 1, block=block,
                                   bottleneck_width=width * 2 ** (s - 1), name=f"stage{s}_block{b + 1}",
                                   bank=bank)
            if s in modules:
                h = _conditioned(modules[s], h, y)
        return head(gap(h))

    if defense in _CHANNEL:
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
