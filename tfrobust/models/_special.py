"""Spatial Transformer network, CapsNet, Vision Transformer and MLP-Mixer for small images."""

from __future__ import annotations

from tfrobust._keras import keras
from tfrobust.layers import (
    AddPositionEmbedding,
    AffineGridSampler,
    CapsuleLength,
    ClassToken,
    DynamicRoutingCapsules,
    Squash,
)
from tfrobust.models._basic import small_cnn_trunk
from tfrobust.models._registry import register
from tfrobust.models._zoo_utils import check_classes, check_float, check_int, model_input

layers = keras.layers


@register("stn")
def stn(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    width: int = 16,
    loc_width: int = 8,
    dense_units: int = 64,
    batch_size: int | None = None,
    name: str = "stn",
):
    """Spatial Transformer network: a localisation net predicts an affine ``theta`` per image,
    :class:`tfrobust.layers.AffineGridSampler` warps the image (affine grid + bilinear sampler),
    and a small CNN classifies the warped image.

    Localisation: conv 5x5 (``loc_width``), pool, conv 5x5 (``2 * loc_width``), pool, dense 32,
    dense 6 initialised to the identity transform (zero kernel, bias [1, 0, 0, 0, 1, 0]), so
    training starts from the un-warped image. Classifier: conv 3x3 (``width``), pool, conv 3x3
    (``2 * width``), pool, dense ``dense_units``, logits.

    References:
      Jaderberg et al., Spatial Transformer Networks, NeurIPS 2015, https://arxiv.org/abs/1506.02025
    """
    num_classes = check_classes(num_classes)
    for arg, value in (("width", width), ("loc_width", loc_width), ("dense_units", dense_units)):
        check_int(arg, value)
    inp = model_input(input_shape, batch_size)
    h = layers.Conv2D(loc_width, 5, padding="same", activation="relu", name="loc_conv1")(inp)
    h = layers.MaxPooling2D(2, padding="same", name="loc_pool1")(h)
    h = layers.Conv2D(2 * loc_width, 5, padding="same", activation="relu", name="loc_conv2")(h)
    h = layers.MaxPooling2D(2, padding="same", name="loc_pool2")(h)
    h = layers.Flatten(name="loc_flatten")(h)
    h = layers.Dense(32, activation="relu", name="loc_fc")(h)
    theta = layers.Dense(
        6,
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
        name="loc_theta",
    )(h)
    x = AffineGridSampler(name="transformer")([inp, theta])
    return keras.Model(inp, small_cnn_trunk(x, num_classes, width, dense_units), name=name)


@register("capsnet")
def capsnet(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    conv_filters: int = 64,
    primary_channels: int = 8,
    primary_dim: int = 8,
    class_dim: int = 16,
    routings: int = 3,
    batch_size: int | None = None,
    name: str = "capsnet",
):
    """CapsNet: conv 9x9 (ReLU) -> PrimaryCaps (conv 9x9 stride 2, ``primary_channels`` capsule
    maps of ``primary_dim``-D capsules, squash) -> class capsules (``class_dim``-D, dynamic
    routing with ``routings`` iterations) -> capsule lengths.

    **Output: capsule lengths in [0, 1), not logits** — they are the class scores
    (``argmax`` = prediction). Train with :class:`tfrobust.losses.MarginLoss` (m+ = 0.9,
    m- = 0.1, lambda = 0.5). Attacks that assume logits (cross-entropy on the scores) still run,
    but their softmax is nearly flat; prefer margin-based (``loss="dlr"``-style) attacks. The
    paper's reconstruction decoder is not included. Scaled down: 64 (not 256) conv filters, 8
    (not 32) primary capsule maps.

    References:
      Sabour, Frosst, Hinton, Dynamic Routing Between Capsules, NeurIPS 2017,
      https://arxiv.org/abs/1710.09829
    """
    num_classes = check_classes(num_classes)
    for arg, value in (
        ("conv_filters", conv_filters),
        ("primary_channels", primary_channels),
        ("primary_dim", primary_dim),
        ("class_dim", class_dim),
        ("routings", routings),
    ):
        check_int(arg, value)
    inp = model_input(input_shape, batch_size)
    if min(inp.shape[1:3]) < 25:
        raise ValueError(
            f"capsnet needs images of at least 25x25 (two 9x9 valid convs). "
            f"Received: input_shape={input_shape!r}"
        )
    x = layers.Conv2D(conv_filters, 9, activation="relu", name="conv1")(inp)
    x = layers.Conv2D(primary_channels * primary_dim, 9, strides=2, name="primary_conv")(x)
    num_primary = int(x.shape[1]) * int(x.shape[2]) * primary_channels
    x = layers.Reshape((num_primary, primary_dim), name="primary_reshape")(x)
    x = Squash(name="primary_squash")(x)
    x = DynamicRoutingCapsules(num_classes, class_dim, routings=routings, name="class_capsules")(x)
    out = CapsuleLength(name="lengths")(x)
    return keras.Model(inp, out, name=name)


def _check_activation(activation):
    try:
        keras.activations.get(activation)
    except (ValueError, TypeError):
        raise ValueError(
            f"`activation` must be a Keras activation name. Received: activation={activation!r}"
        ) from None


def _patches(inp, patch_size, dim, name):
    h, w = int(inp.shape[1]), int(inp.shape[2])
    if h % patch_size or w % patch_size:
        raise ValueError(
            f"`patch_size` must divide the image size {h}x{w}. Received: patch_size={patch_size}"
        )
    x = layers.Conv2D(dim, patch_size, strides=patch_size, name=f"{name}_patch_embed")(inp)
    return layers.Reshape(((h // patch_size) * (w // patch_size), dim), name=f"{name}_tokens")(x)


@register("vit")
def vit(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    patch_size: int = 4,
    dim: int = 64,
    depth: int = 2,
    heads: int = 4,
    mlp_dim: int = 128,
    dropout: float = 0.0,
    activation: str = "gelu",
    batch_size: int | None = None,
    name: str = "vit",
):
    """Vision Transformer: patch embedding (a ``patch_size`` strided conv), class token, learned
    position embedding, ``depth`` pre-norm encoder blocks
    ``z' = z + MSA(LN(z)); z = z' + MLP(LN(z'))`` (GELU MLP), LayerNorm of the class token, logits.

    TFLite Micro has no GELU kernel: pass ``activation="relu"`` for microcontroller targets.

    References:
      Dosovitskiy et al., An Image is Worth 16x16 Words, ICLR 2021, https://arxiv.org/abs/2010.11929
    """
    num_classes = check_classes(num_classes)
    for arg, value in (
        ("patch_size", patch_size),
        ("dim", dim),
        ("depth", depth),
        ("heads", heads),
        ("mlp_dim", mlp_dim),
    ):
        check_int(arg, value)
    if dim % heads:
        raise ValueError(f"`heads` must divide `dim`={dim}. Received: heads={heads}")
    _check_activation(activation)
    check_float("dropout", dropout, low_inclusive=True, high=1.0, high_inclusive=False)
    inp = model_input(input_shape, batch_size)
    x = _patches(inp, patch_size, dim, "vit")
    x = ClassToken(name="class_token")(x)
    x = AddPositionEmbedding(name="position_embedding")(x)
    for i in range(1, depth + 1):
        h = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln1")(x)
        h = layers.MultiHeadAttention(heads, dim // heads, dropout=dropout, name=f"block{i}_msa")(h, h)
        x = layers.Add(name=f"block{i}_add1")([x, h])
        h = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln2")(x)
        h = layers.Dense(mlp_dim, activation=activation, name=f"block{i}_mlp1")(h)
        h = layers.Dense(dim, name=f"block{i}_mlp2")(h)
        if dropout:
            h = layers.Dropout(dropout, name=f"block{i}_dropout")(h)
        x = layers.Add(name=f"block{i}_add2")([x, h])
    x = layers.LayerNormalization(epsilon=1e-6, name="final_ln")(x)
    x = layers.Cropping1D((0, int(x.shape[1]) - 1), name="class_token_out")(x)
    x = layers.Flatten(name="flatten")(x)
    out = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inp, out, name=name)


@register("mlp_mixer")
def mlp_mixer(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    patch_size: int = 4,
    dim: int = 64,
    depth: int = 2,
    token_mlp_dim: int = 32,
    channel_mlp_dim: int = 128,
    activation: str = "gelu",
    batch_size: int | None = None,
    name: str = "mlp_mixer",
):
    """MLP-Mixer: patch embedding, ``depth`` mixer layers, global average pool over tokens,
    LayerNorm, logits. A mixer layer is

    .. math:: U_{*,i} = X_{*,i} + W_2\\,\\sigma(W_1\\,\\mathrm{LN}(X)_{*,i}),\\quad
              Y_{j,*} = U_{j,*} + W_4\\,\\sigma(W_3\\,\\mathrm{LN}(U)_{j,*})

    (token mixing across patches, then channel mixing; sigma = GELU). Token mixing is a Dense
    layer applied to the transposed (channels x tokens) matrix. TFLite Micro has no GELU kernel:
    pass ``activation="relu"`` for microcontroller targets.

    References:
      Tolstikhin et al., MLP-Mixer, NeurIPS 2021, https://arxiv.org/abs/2105.01601
    """
    num_classes = check_classes(num_classes)
    for arg, value in (
        ("patch_size", patch_size),
        ("dim", dim),
        ("depth", depth),
        ("token_mlp_dim", token_mlp_dim),
        ("channel_mlp_dim", channel_mlp_dim),
    ):
        check_int(arg, value)
    _check_activation(activation)
    inp = model_input(input_shape, batch_size)
    x = _patches(inp, patch_size, dim, "mixer")
    tokens = int(x.shape[1])
    for i in range(1, depth + 1):
        h = layers.LayerNormalization(epsilon=1e-6, name=f"mixer{i}_ln1")(x)
        h = layers.Permute((2, 1), name=f"mixer{i}_to_channels")(h)
        h = layers.Dense(token_mlp_dim, activation=activation, name=f"mixer{i}_token_mlp1")(h)
        h = layers.Dense(tokens, name=f"mixer{i}_token_mlp2")(h)
        h = layers.Permute((2, 1), name=f"mixer{i}_to_tokens")(h)
        x = layers.Add(name=f"mixer{i}_add1")([x, h])
        h = layers.LayerNormalization(epsilon=1e-6, name=f"mixer{i}_ln2")(x)
        h = layers.Dense(channel_mlp_dim, activation=activation, name=f"mixer{i}_channel_mlp1")(h)
        h = layers.Dense(dim, name=f"mixer{i}_channel_mlp2")(h)
        x = layers.Add(name=f"mixer{i}_add2")([x, h])
    x = layers.LayerNormalization(epsilon=1e-6, name="final_ln")(x)
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    out = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inp, out, name=name)
