"""Efficient architectures for mobile targets: SqueezeNet, MobileNet (v1), ShuffleNet (v1)."""

from __future__ import annotations

from tfrobust._keras import keras
from tfrobust.layers import ChannelShuffle, GroupConv2D
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
    scaled,
)

layers = keras.layers


def fire_module(x, squeeze, expand, name):
    """SqueezeNet Fire module: squeeze 1x1 (``squeeze``) -> [expand 1x1 | expand 3x3] (``expand``
    each), ReLU everywhere, concatenated."""
    he = "he_normal"  # no BatchNorm here: He init keeps the ReLU stack trainable from the start
    s = layers.Conv2D(squeeze, 1, activation="relu", kernel_initializer=he, name=f"{name}_squeeze")(x)
    e1 = layers.Conv2D(expand, 1, activation="relu", kernel_initializer=he, name=f"{name}_expand1x1")(s)
    e3 = layers.Conv2D(
        expand, 3, padding="same", activation="relu", kernel_initializer=he, name=f"{name}_expand3x3"
    )(s)
    return layers.Concatenate(name=f"{name}_concat")([e1, e3])


@register("squeezenet")
def squeezenet(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    width: float = 0.25,
    dropout: float = 0.5,
    batch_size: int | None = None,
    name: str = "squeezenet",
):
    """SqueezeNet (v1.1 ordering): 3x3 stem, pool, fire2-3, pool, fire4-5, pool, fire6-9,
    dropout, a 1x1 conv to ``num_classes`` and global average pooling (no dense layer).

    Fire channel counts are SqueezeNet's (squeeze 16..64, expand 64..256) x ``width``. The final
    1x1 conv has no ReLU here so the model returns unconstrained logits.

    References:
      Iandola et al., SqueezeNet, 2016, https://arxiv.org/abs/1602.07360
    """
    num_classes = check_classes(num_classes)
    check_float("width", width)
    check_float("dropout", dropout, low_inclusive=True, high=1.0, high_inclusive=False)
    inp = model_input(input_shape, batch_size)
    x = layers.Conv2D(
        scaled(width, 64), 3, padding="same", activation="relu", kernel_initializer="he_normal", name="conv1"
    )(inp)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    plan = [(16, 64), (16, 64), "M", (32, 128), (32, 128), "M", (48, 192), (48, 192), (64, 256), (64, 256)]
    fire, pool = 2, 2
    for item in plan:
        if item == "M":
            x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"pool{pool}")(x)
            pool += 1
        else:
            x = fire_module(x, scaled(width, item[0]), scaled(width, item[1]), f"fire{fire}")
            fire += 1
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Conv2D(num_classes, 1, name="conv10")(x)
    out = layers.GlobalAveragePooling2D(name="logits")(x)
    return keras.Model(inp, out, name=name)


@register("mobilenet")
def mobilenet(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    alpha: float = 0.25,
    depth: int = 2,
    dropout: float = 0.0,
    batch_size: int | None = None,
    name: str = "mobilenet",
):
    """MobileNet v1: a 3x3 conv, then depthwise separable blocks (3x3 depthwise -> BN -> ReLU ->
    1x1 pointwise -> BN -> ReLU) with 64, 128 (s2), 128, 256 (s2), 256, 512 (s2), ``depth`` x 512
    channels, each x the width multiplier ``alpha``; global pool, logits. The stem runs at
    stride 1 (small inputs) and the 1024-channel stage is dropped.

    A depthwise separable block costs ``D_K^2 M D_F^2 + M N D_F^2`` multiply-adds instead of
    ``D_K^2 M N D_F^2``.

    References:
      Howard et al., MobileNets, 2017, https://arxiv.org/abs/1704.04861
    """
    num_classes = check_classes(num_classes)
    check_float("alpha", alpha)
    check_int("depth", depth, minimum=0)
    check_float("dropout", dropout, low_inclusive=True, high=1.0, high_inclusive=False)
    inp = model_input(input_shape, batch_size)
    x = conv_bn_act(inp, scaled(alpha, 32), 3, name="conv1")
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * depth
    for i, (filters, strides) in enumerate(plan, start=1):
        x = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False, name=f"dw{i}")(x)
        x = layers.Activation("relu", name=f"dw{i}_relu")(
            layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"dw{i}_bn")(x)
        )
        x = conv_bn_act(x, scaled(alpha, filters), 1, name=f"pw{i}")
    out = logits_head(x, num_classes, dropout=dropout)
    return keras.Model(inp, out, name=name)


def shuffle_unit(x, out_channels, *, groups, strides, first_group=True, name="unit"):
    """ShuffleNet unit: grouped 1x1 -> BN -> ReLU -> channel shuffle -> 3x3 depthwise (stride) -> BN
    -> grouped 1x1 -> BN, added to the input (stride 1) or concatenated with a 3x3 average pool
    of it (stride 2), then ReLU. The bottleneck has ``out_channels / 4`` channels."""
    in_channels = int(x.shape[-1])
    branch_out = out_channels - in_channels if strides == 2 else out_channels
    bottleneck = max(groups, (out_channels // 4) // groups * groups)
    g1 = groups if first_group else 1
    h = GroupConv2D(bottleneck, 1, groups=g1, use_bias=False, name=f"{name}_gconv1")(x)
    h = layers.Activation("relu", name=f"{name}_relu1")(
        layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn1")(h)
    )
    h = ChannelShuffle(groups, name=f"{name}_shuffle")(h)
    h = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False, name=f"{name}_dw")(h)
    h = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn2")(h)
    h = GroupConv2D(branch_out, 1, groups=groups, use_bias=False, name=f"{name}_gconv2")(h)
    h = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn3")(h)
    if strides == 2:
        shortcut = layers.AveragePooling2D(3, strides=2, padding="same", name=f"{name}_avgpool")(x)
        y = layers.Concatenate(name=f"{name}_concat")([shortcut, h])
    else:
        y = layers.Add(name=f"{name}_add")([x, h])
    return layers.Activation("relu", name=f"{name}_out")(y)


@register("shufflenet")
def shufflenet(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    groups: int = 3,
    stage_channels=(48, 96, 192),
    repeats=(1, 1, 1),
    stem_channels: int = 24,
    batch_size: int | None = None,
    name: str = "shufflenet",
):
    """ShuffleNet v1: 3x3 stem (stride 1 for small inputs), stages of one stride-2 unit plus
    ``repeats`` stride-1 units, global pool, logits. The first unit's first 1x1 conv is not
    grouped (its input is small), as in the paper.

    Args:
      groups: g of the grouped 1x1 convolutions and the channel shuffle.
      stage_channels: output channels per stage (the paper's 240-480-960 for g=3, scaled down);
        each, the stage-to-stage differences and a quarter of each must be divisible by ``groups``.
      repeats: stride-1 units per stage.

    References:
      Zhang, Zhou, Lin, Sun, ShuffleNet, CVPR 2018, https://arxiv.org/abs/1707.01083
    """
    num_classes = check_classes(num_classes)
    check_int("groups", groups)
    check_int("stem_channels", stem_channels)
    channels = check_int_tuple("stage_channels", stage_channels)
    reps = check_int_tuple("repeats", repeats, minimum=0)
    if len(reps) != len(channels):
        raise ValueError(
            f"`repeats` needs one entry per stage ({len(channels)}). Received: repeats={repeats!r}"
        )
    prev = stem_channels
    for c in channels:
        if c <= prev or (c - prev) % groups or c % groups:
            raise ValueError(
                f"`stage_channels` must increase, and each entry and each increase must be "
                f"divisible by groups={groups}. Received: stage_channels={stage_channels!r}"
            )
        prev = c
    inp = model_input(input_shape, batch_size)
    x = conv_bn_act(inp, stem_channels, 3, name="stem")
    for s, (c, r) in enumerate(zip(channels, reps), start=2):
        x = shuffle_unit(x, c, groups=groups, strides=2, first_group=s > 2, name=f"stage{s}_unit1")
        for u in range(r):
            x = shuffle_unit(x, c, groups=groups, strides=1, name=f"stage{s}_unit{u + 2}")
    out = logits_head(x, num_classes)
    return keras.Model(inp, out, name=name)
