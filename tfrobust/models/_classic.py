"""Classic ImageNet architectures scaled down to 28x28 / 32x32: AlexNet, VGG A-E, GoogLeNet
(and BN-Inception), Inception-v3.

Scaling rules: the first layers run at stride 1 (a 28x28 image has no room for AlexNet's 11x11
stride-4 stem), pools use ``padding="same"`` so deep configurations never shrink a map to zero,
and channel counts are the published ones times a width multiplier.
"""

from __future__ import annotations

from tfrobust._keras import keras
from tfrobust.layers import LocalResponseNormalization
from tfrobust.models._registry import register
from tfrobust.models._zoo_utils import (
    check_classes,
    check_float,
    check_int,
    conv_bn_act,
    logits_head,
    model_input,
    scaled,
)

layers = keras.layers


@register("alexnet")
def alexnet(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    width: float = 0.25,
    fc_units: int = 256,
    dropout: float = 0.5,
    lrn: bool = True,
    lrn_implementation: str = "native",
    batch_norm: bool = False,
    batch_size: int | None = None,
    name: str = "alexnet",
):
    """AlexNet: five convs (96-256-384-384-256 x ``width``), LRN after conv1/conv2, three max-pools,
    two dropout-regularised fully connected layers.

    LRN uses the paper's k=2, n=5, alpha=1e-4, beta=0.75. Scaled for small images: conv1 is 5x5
    stride 1 (not 11x11 stride 4), the fully connected layers have ``fc_units`` (not 4096).
    ``lrn_implementation="decomposed"`` makes the model TFLite-Micro compatible (see
    :func:`tfrobust.layers.local_response_normalization`); ``batch_norm=True`` is the
    BatchNorm variant (BN after every conv, usually with ``lrn=False``).

    References:
      Krizhevsky, Sutskever, Hinton, ImageNet Classification with Deep Convolutional Neural
      Networks, NeurIPS 2012.
    """
    num_classes = check_classes(num_classes)
    check_float("width", width)
    check_int("fc_units", fc_units)
    check_float("dropout", dropout, low_inclusive=True, high=1.0, high_inclusive=False)
    inp = model_input(input_shape, batch_size)
    x = inp
    for i, (filters, k) in enumerate([(96, 5), (256, 5), (384, 3), (384, 3), (256, 3)], start=1):
        x = conv_bn_act(x, scaled(width, filters), k, batch_norm=batch_norm, name=f"conv{i}")
        if i <= 2 and lrn:
            x = LocalResponseNormalization(
                depth_radius=2,
                bias=2.0,
                alpha=1e-4,
                beta=0.75,
                implementation=lrn_implementation,
                name=f"lrn{i}",
            )(x)
        if i in (1, 2, 5):
            x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    for i in (6, 7):
        x = layers.Dense(fc_units, activation="relu", name=f"fc{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout{i}")(x)
    out = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inp, out, name=name)


# "M" = 2x2 max-pool; (filters, kernel); filters are VGG's (64..512) before width scaling.
VGG_CONFIGS = {
    "A": [
        (64, 3),
        "M",
        (128, 3),
        "M",
        (256, 3),
        (256, 3),
        "M",
        (512, 3),
        (512, 3),
        "M",
        (512, 3),
        (512, 3),
        "M",
    ],
    "A-LRN": [
        (64, 3),
        "LRN",
        "M",
        (128, 3),
        "M",
        (256, 3),
        (256, 3),
        "M",
        (512, 3),
        (512, 3),
        "M",
        (512, 3),
        (512, 3),
        "M",
    ],
    "B": [
        (64, 3),
        (64, 3),
        "M",
        (128, 3),
        (128, 3),
        "M",
        (256, 3),
        (256, 3),
        "M",
        (512, 3),
        (512, 3),
        "M",
        (512, 3),
        (512, 3),
        "M",
    ],
    "C": [
        (64, 3),
        (64, 3),
        "M",
        (128, 3),
        (128, 3),
        "M",
        (256, 3),
        (256, 3),
        (256, 1),
        "M",
        (512, 3),
        (512, 3),
        (512, 1),
        "M",
        (512, 3),
        (512, 3),
        (512, 1),
        "M",
    ],
    "D": [
        (64, 3),
        (64, 3),
        "M",
        (128, 3),
        (128, 3),
        "M",
        (256, 3),
        (256, 3),
        (256, 3),
        "M",
        (512, 3),
        (512, 3),
        (512, 3),
        "M",
        (512, 3),
        (512, 3),
        (512, 3),
        "M",
    ],
    "E": [
        (64, 3),
        (64, 3),
        "M",
        (128, 3),
        (128, 3),
        "M",
        (256, 3),
        (256, 3),
        (256, 3),
        (256, 3),
        "M",
        (512, 3),
        (512, 3),
        (512, 3),
        (512, 3),
        "M",
        (512, 3),
        (512, 3),
        (512, 3),
        (512, 3),
        "M",
    ],
}


@register("vgg")
def vgg(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    config: str = "D",
    width: float = 0.125,
    fc_units: int = 128,
    dropout: float = 0.5,
    batch_norm: bool = False,
    batch_size: int | None = None,
    name: str | None = None,
):
    """VGG configurations A, A-LRN, B, C, D (VGG-16) and E (VGG-19) of Simonyan & Zisserman.

    Channel counts are 64-128-256-512-512 x ``width``; the five max-pools use ``padding="same"``
    (28 -> 14 -> 7 -> 4 -> 2 -> 1); the two hidden FC layers have ``fc_units`` (not 4096).
    ``batch_norm=True`` gives the BatchNorm variant (VGG-BN).

    References:
      Simonyan, Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition,
      ICLR 2015, https://arxiv.org/abs/1409.1556
    """
    num_classes = check_classes(num_classes)
    if config not in VGG_CONFIGS:
        raise ValueError(f"`config` must be one of {sorted(VGG_CONFIGS)}. Received: config={config!r}")
    check_float("width", width)
    check_int("fc_units", fc_units)
    check_float("dropout", dropout, low_inclusive=True, high=1.0, high_inclusive=False)
    inp = model_input(input_shape, batch_size)
    x = inp
    stage, conv = 1, 0
    for item in VGG_CONFIGS[config]:
        if item == "M":
            x = layers.MaxPooling2D(2, padding="same", name=f"pool{stage}")(x)
            stage, conv = stage + 1, 0
        elif item == "LRN":
            x = LocalResponseNormalization(name="lrn")(x)
        else:
            conv += 1
            x = conv_bn_act(
                x, scaled(width, item[0]), item[1], batch_norm=batch_norm, name=f"block{stage}_conv{conv}"
            )
    x = layers.Flatten(name="flatten")(x)
    for i in (1, 2):
        x = layers.Dense(fc_units, activation="relu", name=f"fc{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout{i}")(x)
    out = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inp, out, name=name or f"vgg_{config.lower().replace('-', '_')}")


def inception_module(x, f1, f3r, f3, f5r, f5, fp, *, batch_norm=False, name="inception"):
    """GoogLeNet module: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max-pool -> 1x1, concatenated.

    The 1x1 convolutions before the 3x3 / 5x5 ones are the dimension reductions that keep the
    module cheap.
    """
    b1 = conv_bn_act(x, f1, 1, batch_norm=batch_norm, name=f"{name}_1x1")
    b2 = conv_bn_act(x, f3r, 1, batch_norm=batch_norm, name=f"{name}_3x3r")
    b2 = conv_bn_act(b2, f3, 3, batch_norm=batch_norm, name=f"{name}_3x3")
    b3 = conv_bn_act(x, f5r, 1, batch_norm=batch_norm, name=f"{name}_5x5r")
    b3 = conv_bn_act(b3, f5, 5, batch_norm=batch_norm, name=f"{name}_5x5")
    b4 = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    b4 = conv_bn_act(b4, fp, 1, batch_norm=batch_norm, name=f"{name}_poolproj")
    return layers.Concatenate(name=f"{name}_concat")([b1, b2, b3, b4])


# GoogLeNet's (f1, f3r, f3, f5r, f5, fp) for modules 3a, 3b, 4a, 4b.
_GOOGLENET_MODULES = [
    (64, 96, 128, 16, 32, 32),
    (128, 128, 192, 32, 96, 64),
    (192, 96, 208, 16, 48, 64),
    (160, 112, 224, 24, 64, 64),
]


@register("googlenet")
def googlenet(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    width: float = 0.125,
    dropout: float = 0.4,
    batch_norm: bool = False,
    batch_size: int | None = None,
    name: str = "googlenet",
):
    """GoogLeNet-style network: a 3x3 stem, Inception modules 3a, 3b (pool) 4a, 4b, global average
    pool, dropout and the logits layer; channel counts are GoogLeNet's x ``width``.

    ``batch_norm=True`` is the BN-Inception variant (BatchNorm after every convolution, Ioffe &
    Szegedy 2015; registered as ``"bn_inception"``).

    References:
      Szegedy et al., Going Deeper with Convolutions, CVPR 2015, https://arxiv.org/abs/1409.4842;
      Ioffe, Szegedy, Batch Normalization, ICML 2015, https://arxiv.org/abs/1502.03167
    """
    num_classes = check_classes(num_classes)
    check_float("width", width)
    check_float("dropout", dropout, low_inclusive=True, high=1.0, high_inclusive=False)
    inp = model_input(input_shape, batch_size)
    x = conv_bn_act(inp, scaled(width, 192), 3, batch_norm=batch_norm, name="stem")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for i, (label, f) in enumerate(zip(["3a", "3b", "4a", "4b"], _GOOGLENET_MODULES)):
        if i == 2:
            x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool3")(x)
        x = inception_module(
            x, *(scaled(width, c) for c in f), batch_norm=batch_norm, name=f"inception{label}"
        )
    out = logits_head(x, num_classes, dropout=dropout)
    return keras.Model(inp, out, name=name)


@register("bn_inception")
def bn_inception(input_shape=(28, 28, 1), num_classes: int = 10, **kwargs):
    """:func:`googlenet` with ``batch_norm=True`` (BN-Inception, Ioffe & Szegedy 2015)."""
    kwargs.setdefault("name", "bn_inception")
    return googlenet(input_shape, num_classes, batch_norm=True, **kwargs)


def inception_v3_block_a(x, f, name):
    """Figure 5 of Inception-v3: the 5x5 branch factorised into two 3x3 convolutions."""
    b1 = conv_bn_act(x, f, 1, name=f"{name}_1x1")
    b2 = conv_bn_act(conv_bn_act(x, f, 1, name=f"{name}_3x3r"), f, 3, name=f"{name}_3x3")
    b3 = conv_bn_act(x, f, 1, name=f"{name}_dbl_r")
    b3 = conv_bn_act(conv_bn_act(b3, f, 3, name=f"{name}_dbl_1"), f, 3, name=f"{name}_dbl_2")
    b4 = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    b4 = conv_bn_act(b4, f, 1, name=f"{name}_poolproj")
    return layers.Concatenate(name=f"{name}_concat")([b1, b2, b3, b4])


def inception_v3_block_b(x, f, n, name):
    """Figure 6: n x n convolutions factorised into 1 x n followed by n x 1."""
    b1 = conv_bn_act(x, f, 1, name=f"{name}_1x1")
    b2 = conv_bn_act(x, f, 1, name=f"{name}_nr")
    b2 = conv_bn_act(conv_bn_act(b2, f, (1, n), name=f"{name}_1xn"), f, (n, 1), name=f"{name}_nx1")
    b3 = conv_bn_act(x, f, 1, name=f"{name}_dbl_r")
    for i in (1, 2):
        b3 = conv_bn_act(
            conv_bn_act(b3, f, (1, n), name=f"{name}_dbl_1xn{i}"), f, (n, 1), name=f"{name}_dbl_nx1{i}"
        )
    b4 = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    b4 = conv_bn_act(b4, f, 1, name=f"{name}_poolproj")
    return layers.Concatenate(name=f"{name}_concat")([b1, b2, b3, b4])


def inception_v3_block_c(x, f, name):
    """Figure 7: expanded filter bank, parallel 1x3 and 3x1 outputs (for the coarsest grid)."""
    b1 = conv_bn_act(x, f, 1, name=f"{name}_1x1")
    b2 = conv_bn_act(x, f, 1, name=f"{name}_r")
    b2 = layers.Concatenate(name=f"{name}_split_concat")(
        [conv_bn_act(b2, f, (1, 3), name=f"{name}_1x3"), conv_bn_act(b2, f, (3, 1), name=f"{name}_3x1")]
    )
    b3 = conv_bn_act(conv_bn_act(x, f, 1, name=f"{name}_dbl_r"), f, 3, name=f"{name}_dbl_3x3")
    b3 = layers.Concatenate(name=f"{name}_dbl_concat")(
        [
            conv_bn_act(b3, f, (1, 3), name=f"{name}_dbl_1x3"),
            conv_bn_act(b3, f, (3, 1), name=f"{name}_dbl_3x1"),
        ]
    )
    b4 = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    b4 = conv_bn_act(b4, f, 1, name=f"{name}_poolproj")
    return layers.Concatenate(name=f"{name}_concat")([b1, b2, b3, b4])


def grid_reduction(x, f, name):
    """Figure 10: halve the grid with parallel stride-2 conv branches and a stride-2 pool
    (no representational bottleneck from pooling first)."""
    b1 = conv_bn_act(x, f, 3, strides=2, name=f"{name}_3x3")
    b2 = conv_bn_act(conv_bn_act(x, f, 1, name=f"{name}_dbl_r"), f, 3, name=f"{name}_dbl_1")
    b2 = conv_bn_act(b2, f, 3, strides=2, name=f"{name}_dbl_2")
    b3 = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_pool")(x)
    return layers.Concatenate(name=f"{name}_concat")([b1, b2, b3])


@register("inception_v3")
def inception_v3(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    width: int = 8,
    n: int = 3,
    dropout: float = 0.2,
    batch_size: int | None = None,
    name: str = "inception_v3",
):
    """Inception-v3 building blocks on a small grid: stem (3x3 stride 2), block A (two 3x3 for a
    5x5), grid reduction, block B (1 x n + n x 1), grid reduction, block C (expanded filter
    bank), global average pool, dropout, logits. Every conv is followed by BatchNorm + ReLU.

    Args:
      width: filters per branch of block A (B uses 2x, C 3x).
      n: the factorised kernel size of block B (the paper uses 7 on a 17x17 grid; the default 3
        suits the 7x7 grid a 28x28 input has there).

    References:
      Szegedy et al., Rethinking the Inception Architecture for Computer Vision, CVPR 2016,
      https://arxiv.org/abs/1512.00567
    """
    num_classes = check_classes(num_classes)
    check_int("width", width)
    check_int("n", n)
    check_float("dropout", dropout, low_inclusive=True, high=1.0, high_inclusive=False)
    inp = model_input(input_shape, batch_size)
    x = conv_bn_act(inp, 2 * width, 3, strides=2, name="stem1")
    x = conv_bn_act(x, 2 * width, 3, name="stem2")
    x = inception_v3_block_a(x, width, "mixed_a")
    x = grid_reduction(x, 2 * width, "reduction1")
    x = inception_v3_block_b(x, 2 * width, n, "mixed_b")
    x = grid_reduction(x, 3 * width, "reduction2")
    x = inception_v3_block_c(x, 3 * width, "mixed_c")
    out = logits_head(x, num_classes, dropout=dropout)
    return keras.Model(inp, out, name=name)
