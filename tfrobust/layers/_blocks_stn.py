"""Spatial-transformer pieces (Jaderberg et al. 2015): affine grid and bilinear sampler.

The sampler is built from GATHER (with ``batch_dims=1``), FLOOR, CAST and arithmetic, all TFLite
builtins.

References:
  Jaderberg, Simonyan, Zisserman, Kavukcuoglu, Spatial Transformer Networks, NeurIPS 2015,
  https://arxiv.org/abs/1506.02025
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrobust._keras import keras
from tfrobust.layers._blocks import _check_int

__all__ = ["AffineGridSampler", "affine_grid", "bilinear_sample"]

_serializable = keras.utils.register_keras_serializable(package="tfrobust")


def affine_grid(theta, height: int, width: int):
    """Source coordinates of an affine transform on a regular ``height x width`` target grid.

    .. math:: \\begin{pmatrix} x^s_i \\\\ y^s_i \\end{pmatrix} = \\theta
              \\begin{pmatrix} x^t_i \\\\ y^t_i \\\\ 1 \\end{pmatrix}

    with target coordinates normalised to ``[-1, 1]`` (``-1`` = centre of the first pixel, ``+1``
    = centre of the last one), so ``theta = [[1, 0, 0], [0, 1, 0]]`` is the identity.

    Args:
      theta: ``(N, 6)`` row-major 2x3 affine matrices.
      height, width: target grid size.

    Returns:
      ``(x_s, y_s)``, each ``(N, height * width)`` in normalised coordinates.
    """
    _check_int("height", height)
    _check_int("width", width)
    ys, xs = np.meshgrid(np.linspace(-1.0, 1.0, height), np.linspace(-1.0, 1.0, width), indexing="ij")
    grid = np.stack([xs.ravel(), ys.ravel(), np.ones(height * width)]).astype(np.float32)  # (3, HW)
    grid = tf.constant(grid, dtype=theta.dtype)
    return tf.matmul(theta[:, 0:3], grid), tf.matmul(theta[:, 3:6], grid)


def bilinear_sample(image, x, y):
    """Samples ``image`` (N, H, W, C) at normalised points ``(x, y)`` (each (N, P)) bilinearly.

    .. math:: V_i = \\sum_{n,m} U_{nm}\\,\\max(0, 1 - |x_i - m|)\\,\\max(0, 1 - |y_i - n|)

    in pixel coordinates ``x = (x_norm + 1)(W - 1) / 2``; points outside the image read zeros.

    Returns:
      ``(N, P, C)`` samples.
    """
    height, width, channels = (int(d) for d in image.shape[1:])
    flat = tf.reshape(image, (-1, height * width, channels))
    px = (x + 1.0) * (0.5 * (width - 1))
    py = (y + 1.0) * (0.5 * (height - 1))
    x0 = tf.floor(px)
    y0 = tf.floor(py)
    out = 0.0
    for dx in (0.0, 1.0):
        for dy in (0.0, 1.0):
            xi, yi = x0 + dx, y0 + dy
            weight = (1.0 - tf.abs(px - xi)) * (1.0 - tf.abs(py - yi))
            inside = (xi >= 0.0) & (xi <= width - 1.0) & (yi >= 0.0) & (yi <= height - 1.0)
            weight = weight * tf.cast(inside, image.dtype)
            xc = tf.clip_by_value(xi, 0.0, width - 1.0)
            yc = tf.clip_by_value(yi, 0.0, height - 1.0)
            idx = tf.cast(yc * width + xc, tf.int32)
            out = out + tf.gather(flat, idx, batch_dims=1) * weight[..., None]
    return out


@_serializable
class AffineGridSampler(keras.layers.Layer):
    """Warps an image with per-example affine matrices: ``[image (N,H,W,C), theta (N,6)] -> image``.

    The output has the input's spatial size (or ``output_size=(h, w)``). Put a localisation
    network in front whose last Dense layer is initialised to the identity transform (zero kernel,
    bias ``[1, 0, 0, 0, 1, 0]``), as in Jaderberg et al.
    """

    def __init__(self, output_size=None, **kwargs):
        super().__init__(**kwargs)
        if output_size is not None:
            try:
                output_size = tuple(_check_int("output_size", int(s)) for s in output_size)
            except (TypeError, ValueError):
                output_size = ()
            if len(output_size) != 2:
                raise ValueError(
                    "`output_size` must be None or (height, width) with positive ints. "
                    f"Received: output_size={output_size!r}"
                )
        self.output_size = output_size

    def call(self, inputs):
        image, theta = inputs
        h, w = self.output_size or (int(image.shape[1]), int(image.shape[2]))
        xs, ys = affine_grid(theta, h, w)
        out = bilinear_sample(image, xs, ys)
        return tf.reshape(out, (-1, h, w, int(image.shape[-1])))

    def compute_output_shape(self, input_shape):
        image_shape = tf.TensorShape(input_shape[0]).as_list()
        h, w = self.output_size or image_shape[1:3]
        return tf.TensorShape([image_shape[0], h, w, image_shape[3]])

    def get_config(self):
        return {
            **super().get_config(),
            "output_size": None if self.output_size is None else list(self.output_size),
        }
