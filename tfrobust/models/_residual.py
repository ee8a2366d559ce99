"""Residual families on CIFAR-style three-stage layouts: ResNet (basic / bottleneck,
post- and pre-activation), SE- and CBAM-ResNet, ResNeXt, DenseNet, Residual Attention, NF-ResNet.

Stages run at the input resolution, 1/2 and 1/4 with ``width``, ``2 * width``, ``4 * width``
channels (He et al.'s CIFAR ResNets), so 28x28 and 32x32 inputs both fit.
"""

from __future__ import annotations

import math

from tfrobust._keras import keras
from tfrobust.layers import CBAM, GroupConv2D, ScaledWSConv2D, SqueezeExcitation
from tfrobust.models._registry import register
from tfrobust.models._zoo_utils import (
    BN_MOMENTUM,
    check_classes,
    check_float,
    check_int,
    check_int_tuple,
    conv_bn_act,
    logits_head,
    model_input,
)

layers = keras.layers

_ATTENTION = (None, "se", "cbam")


def _layer(bank, cls, *args, name, **kwargs):
    """``cls(*args, name=name, **kwargs)``, or with a ``bank`` (a dict) the layer of that name made before.

    A bank lets a builder run twice over the same layers: ``label_conditioned_pair`` builds a
    training graph and an inference graph that must share every weight.
    """
    if bank is None:
        return cls(*args, name=name, **kwargs)
    if name is None:
        raise ValueError("Layers shared through a bank need a name. Received: name=None")
    if name not in bank:
        bank[name] = cls(*args, name=name, **kwargs)
    return bank[name]


def _attention(x, attention, ratio, name, bank=None):
    if attention == "se":
        return _layer(bank, SqueezeExcitation, ratio, name=f"{name}_se")(x)
    if attention == "cbam":
        return _layer(bank, CBAM, ratio, name=f"{name}_cbam")(x)
    return x


def _bn_relu(x, name, bank=None):
    x = _layer(bank, layers.BatchNormalization, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return _layer(bank, layers.Activation, "relu", name=f"{name}_relu")(x)


def _conv(x, filters, k, strides=1, name=None, bank=None):
    return _layer(
        bank, layers.Conv2D, filters, k, strides=strides, padding="same", use_bias=False,
        kernel_initializer="he_normal", name=name,
    )(x)


def residual_block(
    x,
    filters,
    *,
    strides=1,
    block="basic",
    preact=False,
    groups=1,
    bottleneck_width=None,
    attention=None,
    ratio=8,
    name="block",
    bank=None,
):
    """One residual unit ``y = F(x) + shortcut(x)``.

    ``block="basic"``: two 3x3 convs with ``filters`` channels. ``block="bottleneck"``: 1x1
    (``bottleneck_width``, default ``filters // 4``) -> 3x3 (grouped when ``groups > 1``:
    ResNeXt) -> 1x1 (``filters``). ``preact=True`` is the identity-mapping variant of He et al.
    2016 (BN-ReLU before each conv, nothing after the addition). ``attention`` ("se" / "cbam")
    recalibrates F(x) before the addition. The shortcut is the identity, or a 1x1 projection
    when the shape changes. ``bank`` (a dict): reuse the layers of the same names made by an
    earlier call with that bank (to build two graphs over one set of weights).
    """
    channels = int(x.shape[-1])
    project = strides != 1 or channels != filters
    inner = bottleneck_width or max(1, filters // 4)
    if preact:
        pre = _bn_relu(x, f"{name}_pre", bank)
        shortcut = _conv(pre, filters, 1, strides, name=f"{name}_proj", bank=bank) if project else x
        h = pre
    else:
        shortcut = x
        if project:
            shortcut = _conv(x, filters, 1, strides, name=f"{name}_proj", bank=bank)
            shortcut = _layer(bank, layers.BatchNormalization, momentum=BN_MOMENTUM,
                              name=f"{name}_proj_bn")(shortcut)
        h = x

    def conv_unit(h, f, k, s, i, first):
        if preact and not first:
            h = _bn_relu(h, f"{name}_{i}", bank)
        if k == 3 and groups > 1:
            h = _layer(bank, GroupConv2D, f, 3, groups=groups, strides=s, use_bias=False,
                       name=f"{name}_conv{i}")(h)
        else:
            h = _conv(h, f, k, s, name=f"{name}_conv{i}", bank=bank)
        return h

    if block == "basic":
        plan = [(filters, 3, strides), (filters, 3, 1)]
    else:
        plan = [(inner, 1, 1), (inner, 3, strides), (filters, 1, 1)]
    for i, (f, k, s) in enumerate(plan, start=1):
        h = conv_unit(h, f, k, s, i, first=i == 1)
        if not preact:
            h = _layer(bank, layers.BatchNormalization, momentum=BN_MOMENTUM, name=f"{name}_{i}_bn")(h)
            if i < len(plan):
                h = _layer(bank, layers.Activation, "relu", name=f"{name}_{i}_relu")(h)
    h = _attention(h, attention, ratio, name, bank)
    y = _layer(bank, layers.Add, name=f"{name}_add")([h, shortcut])
    if not preact:
        y = _layer(bank, layers.Activation, "relu", name=f"{name}_out")(y)
    return y


def _stages(blocks_per_stage):
    """Units per stage; an int ``n`` means three stages of ``n``."""
    stages = check_int_tuple("blocks_per_stage", blocks_per_stage)
    return stages * 3 if isinstance(blocks_per_stage, int) else stages


def _check_block_args(block, attention):
    if block not in ("basic", "bottleneck"):
        raise ValueError(f"`block` must be 'basic' or 'bottleneck'. Received: block={block!r}")
    if attention not in _ATTENTION:
        raise ValueError(f"`attention` must be one of {_ATTENTION}. Received: attention={attention!r}")


@register("resnet")
def resnet(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    block: str = "basic",
    preact: bool = False,
    width: int = 16,
    blocks_per_stage=(1, 1, 1),
    attention: str | None = None,
    ratio: int = 8,
    batch_size: int | None = None,
    name: str | None = None,
):
    """CIFAR-style ResNet: 3x3 stem, three stages of residual units (stride 1, 2, 2) with
    ``width``, ``2 * width``, ``4 * width`` channels (x4 for bottleneck units), global average
    pool, logits. ``blocks_per_stage=(n, n, n)`` gives ResNet-(6n + 2) with basic units.

    Args:
      block: "basic" (two 3x3) or "bottleneck" (1x1-3x3-1x1, expansion 4).
      preact: pre-activation units (identity mappings, He et al. 2016b).
      width: channels of the first stage.
      blocks_per_stage: units per stage (an int or a tuple; the number of stages is its length).
      attention: None, "se" (Squeeze-and-Excitation) or "cbam" inside every unit.
      ratio: the attention reduction ratio.

    References:
      He et al., Deep Residual Learning, CVPR 2016, https://arxiv.org/abs/1512.03385;
      He et al., Identity Mappings in Deep Residual Networks, ECCV 2016,
      https://arxiv.org/abs/1603.05027
    """
    num_classes = check_classes(num_classes)
    _check_block_args(block, attention)
    check_int("width", width)
    check_int("ratio", ratio)
    stages = _stages(blocks_per_stage)
    expansion = 4 if block == "bottleneck" else 1
    inp = model_input(input_shape, batch_size)
    x = _conv(inp, width, 3, name="stem_conv")
    if not preact:
        x = _bn_relu(x, "stem")
    for s, n in enumerate(stages):
        for b in range(n):
            x = residual_block(
                x,
                width * 2**s * expansion,
                strides=2 if (s > 0 and b == 0) else 1,
                block=block,
                preact=preact,
                bottleneck_width=width * 2**s,
                attention=attention,
                ratio=ratio,
                name=f"stage{s + 1}_block{b + 1}",
            )
    if preact:
        x = _bn_relu(x, "final")
    out = logits_head(x, num_classes)
    if name is None:
        name = "_".join(filter(None, ["preact" if preact else None, attention, "resnet", block]))
    return keras.Model(inp, out, name=name)


@register("preact_resnet")
def preact_resnet(input_shape=(28, 28, 1), num_classes: int = 10, **kwargs):
    """:func:`resnet` with pre-activation units (identity mappings, He et al. 2016b)."""
    return resnet(input_shape, num_classes, preact=True, **kwargs)


@register("se_resnet")
def se_resnet(input_shape=(28, 28, 1), num_classes: int = 10, **kwargs):
    """:func:`resnet` with a Squeeze-and-Excitation block in every unit (Hu et al. 2018,
    https://arxiv.org/abs/1709.01507)."""
    return resnet(input_shape, num_classes, attention="se", **kwargs)


@register("cbam_resnet")
def cbam_resnet(input_shape=(28, 28, 1), num_classes: int = 10, **kwargs):
    """:func:`resnet` with CBAM (channel then spatial attention) in every unit (Woo et al. 2018,
    https://arxiv.org/abs/1807.06521)."""
    return resnet(input_shape, num_classes, attention="cbam", **kwargs)


@register("resnext")
def resnext(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    cardinality: int = 4,
    group_width: int = 4,
    width: int = 32,
    blocks_per_stage=(1, 1, 1),
    batch_size: int | None = None,
    name: str = "resnext",
):
    """ResNeXt: bottleneck units whose 3x3 conv is grouped (``cardinality`` groups of
    ``group_width * 2**stage`` channels), aggregating parallel transformations.

    Args:
      cardinality: number of groups C.
      group_width: channels per group in the first stage (d).
      width: output channels of the first stage (doubled per stage).

    References:
      Xie et al., Aggregated Residual Transformations for Deep Neural Networks, CVPR 2017,
      https://arxiv.org/abs/1611.05431
    """
    num_classes = check_classes(num_classes)
    check_int("cardinality", cardinality)
    check_int("group_width", group_width)
    check_int("width", width)
    stages = _stages(blocks_per_stage)
    inp = model_input(input_shape, batch_size)
    x = conv_bn_act(inp, width // 2 or 1, 3, name="stem")
    for s, n in enumerate(stages):
        for b in range(n):
            x = residual_block(
                x,
                width * 2**s,
                strides=2 if (s > 0 and b == 0) else 1,
                block="bottleneck",
                groups=cardinality,
                bottleneck_width=cardinality * group_width * 2**s,
                name=f"stage{s + 1}_block{b + 1}",
            )
    out = logits_head(x, num_classes)
    return keras.Model(inp, out, name=name)


@register("densenet")
def densenet(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    growth_rate: int = 8,
    layers_per_block=(3, 3, 3),
    compression: float = 0.5,
    bottleneck: bool = True,
    batch_size: int | None = None,
    name: str = "densenet",
):
    """DenseNet(-BC): dense blocks where layer l receives the concatenation of all earlier
    feature maps, ``x_l = H_l([x_0, ..., x_{l-1}])``; H_l is BN-ReLU-1x1 (4k) -BN-ReLU-3x3 (k)
    (``bottleneck=False``: BN-ReLU-3x3 only); transitions are BN-ReLU-1x1
    (``floor(compression * C)``) -2x2 average pool.

    Args:
      growth_rate: k, channels each layer adds.
      layers_per_block: layers in each dense block.
      compression: theta of the transitions, in (0, 1].

    References:
      Huang et al., Densely Connected Convolutional Networks, CVPR 2017,
      https://arxiv.org/abs/1608.06993
    """
    num_classes = check_classes(num_classes)
    check_int("growth_rate", growth_rate)
    blocks = check_int_tuple("layers_per_block", layers_per_block)
    check_float("compression", compression, high=1.0)
    inp = model_input(input_shape, batch_size)
    x = _conv(inp, 2 * growth_rate, 3, name="stem_conv")
    for bi, n in enumerate(blocks, start=1):
        for li in range(1, n + 1):
            name_l = f"dense{bi}_layer{li}"
            h = _bn_relu(x, f"{name_l}_1")
            if bottleneck:
                h = _conv(h, 4 * growth_rate, 1, name=f"{name_l}_conv1")
                h = _bn_relu(h, f"{name_l}_2")
            h = _conv(h, growth_rate, 3, name=f"{name_l}_conv2")
            x = layers.Concatenate(name=f"{name_l}_concat")([x, h])
        if bi < len(blocks):
            x = _bn_relu(x, f"transition{bi}")
            x = _conv(
                x, max(1, int(math.floor(compression * int(x.shape[-1])))), 1, name=f"transition{bi}_conv"
            )
            x = layers.AveragePooling2D(2, padding="same", name=f"transition{bi}_pool")(x)
    x = _bn_relu(x, "final")
    out = logits_head(x, num_classes)
    return keras.Model(inp, out, name=name)


def _preact_unit(x, filters, strides=1, name="unit"):
    return residual_block(x, filters, strides=strides, block="basic", preact=True, name=name)


def attention_module(x, *, trunk_units=2, name="attention"):
    """Residual Attention module: ``H = (1 + M(x)) * T(x)``.

    Trunk T: ``trunk_units`` pre-activation residual units. Mask M: 2x2 max-pool, one residual
    unit, bilinear resize back to the input size, BN-ReLU-1x1, BN-ReLU-1x1, sigmoid. Attention
    residual learning (the ``1 +``) keeps the trunk's features when the mask is near zero.

    References:
      Wang et al., Residual Attention Network for Image Classification, CVPR 2017,
      https://arxiv.org/abs/1704.06904
    """
    channels = int(x.shape[-1])
    h, w = int(x.shape[1]), int(x.shape[2])
    x = _preact_unit(x, channels, name=f"{name}_pre")
    t = x
    for i in range(trunk_units):
        t = _preact_unit(t, channels, name=f"{name}_trunk{i + 1}")
    m = layers.MaxPooling2D(2, padding="same", name=f"{name}_mask_down")(x)
    m = _preact_unit(m, channels, name=f"{name}_mask_unit")
    m = layers.Resizing(h, w, interpolation="bilinear", name=f"{name}_mask_up")(m)
    m = _conv(_bn_relu(m, f"{name}_mask_1"), channels, 1, name=f"{name}_mask_conv1")
    m = _conv(_bn_relu(m, f"{name}_mask_2"), channels, 1, name=f"{name}_mask_conv2")
    m = layers.Activation("sigmoid", name=f"{name}_mask_sigmoid")(m)
    mt = layers.Multiply(name=f"{name}_mask_times_trunk")([m, t])
    y = layers.Add(name=f"{name}_one_plus_mask")([t, mt])
    return _preact_unit(y, channels, name=f"{name}_post")


@register("residual_attention")
def residual_attention(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    width: int = 16,
    trunk_units: int = 1,
    batch_size: int | None = None,
    name: str = "residual_attention",
):
    """Residual Attention Network: stem, residual unit (stride 2), attention module, residual unit
    (stride 2), attention module, residual unit, BN-ReLU, global pool, logits.

    References:
      Wang et al., Residual Attention Network for Image Classification, CVPR 2017,
      https://arxiv.org/abs/1704.06904
    """
    num_classes = check_classes(num_classes)
    check_int("width", width)
    check_int("trunk_units", trunk_units)
    inp = model_input(input_shape, batch_size)
    x = _conv(inp, width, 3, name="stem_conv")
    x = _preact_unit(x, 2 * width, strides=2, name="unit1")
    x = attention_module(x, trunk_units=trunk_units, name="attention1")
    x = _preact_unit(x, 4 * width, strides=2, name="unit2")
    x = attention_module(x, trunk_units=trunk_units, name="attention2")
    x = _preact_unit(x, 4 * width, name="unit3")
    x = _bn_relu(x, "final")
    out = logits_head(x, num_classes)
    return keras.Model(inp, out, name=name)


# Gain of ReLU for variance preservation: gamma = sqrt(2 / (1 - 1/pi)) (Brock et al. 2021a).
RELU_GAMMA = math.sqrt(2.0 / (1.0 - 1.0 / math.pi))


def _gamma_relu(x, name):
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    return layers.Rescaling(RELU_GAMMA, name=f"{name}_gamma")(x)


@register("nf_resnet")
def nf_resnet(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    width: int = 16,
    blocks_per_stage=(1, 1, 1),
    alpha: float = 0.2,
    dropout: float = 0.0,
    batch_size: int | None = None,
    name: str = "nf_resnet",
):
    """Normalizer-free ResNet: no BatchNorm; residual units ``h_{l+1} = h_l + alpha f_l(h_l / beta_l)``.

    ``beta_l = sqrt(Var(h_l))`` is the *analytically* expected standard deviation: it starts at
    1, grows as ``Var(h_{l+1}) = Var(h_l) + alpha^2`` and resets to ``1 + alpha^2`` after each
    transition unit (whose shortcut is a 1x1 conv of the normalised input). Every conv is a
    :class:`tfrobust.layers.ScaledWSConv2D` and every ReLU is scaled by
    ``gamma = sqrt(2 / (1 - 1/pi))``, which together preserve variance at initialisation. Pair
    with adaptive gradient clipping (AGC) for large batches.

    References:
      Brock, De, Smith, Characterizing signal propagation to close the performance gap in
      unnormalized ResNets, ICLR 2021, https://arxiv.org/abs/2101.08692
    """
    num_classes = check_classes(num_classes)
    check_int("width", width)
    stages = _stages(blocks_per_stage)
    check_float("alpha", alpha)
    check_float("dropout", dropout, low_inclusive=True, high=1.0, high_inclusive=False)
    inp = model_input(input_shape, batch_size)
    x = ScaledWSConv2D(width, 3, padding="same", name="stem_conv")(inp)
    expected_var = 1.0
    for s, n in enumerate(stages):
        filters = width * 2**s
        for b in range(n):
            name_b = f"stage{s + 1}_block{b + 1}"
            strides = 2 if (s > 0 and b == 0) else 1
            transition = strides != 1 or int(x.shape[-1]) != filters
            beta = math.sqrt(expected_var)
            h = layers.Rescaling(1.0 / beta, name=f"{name_b}_inv_beta")(x)
            h = _gamma_relu(h, f"{name_b}_act1")
            shortcut = (
                ScaledWSConv2D(filters, 1, strides=strides, padding="same", name=f"{name_b}_proj")(h)
                if transition
                else x
            )
            h = ScaledWSConv2D(filters, 3, strides=strides, padding="same", name=f"{name_b}_conv1")(h)
            h = _gamma_relu(h, f"{name_b}_act2")
            h = ScaledWSConv2D(filters, 3, padding="same", name=f"{name_b}_conv2")(h)
            h = layers.Rescaling(alpha, name=f"{name_b}_alpha")(h)
            x = layers.Add(name=f"{name_b}_add")([h, shortcut])
            expected_var = 1.0 + alpha**2 if transition else expected_var + alpha**2
    x = _gamma_relu(x, "final")
    out = logits_head(x, num_classes, dropout=dropout)
    return keras.Model(inp, out, name=name)
