"""Weight masks for Dense/Conv kernels: magnitude selection and mask-preserving training.

Shared by Deep Compression, joint pruning (JPnet) and lottery tickets. A mask ``m`` keeps a weight
when ``m = 1``; training with a mask re-applies ``W <- W * m`` after every optimizer step, so the
pruned connections stay exactly zero (the optimizer's momentum cannot regrow them).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrobust import _validate as V
from tfrobust._keras import keras

__all__ = ["MaskCallback", "apply_masks", "kernel_layers", "magnitude_masks", "mask_sparsity"]


def kernel_layers(model) -> list:
    """Dense and Conv layers (the layers whose ``kernel`` is pruned), in model order."""
    return [layer for layer in model.layers
            if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D, keras.layers.Conv1D))
            and not isinstance(layer, keras.layers.DepthwiseConv2D)]


def _check_sparsity(value, name):
    return V.fraction(name, value, open_max=True)


def magnitude_masks(model, sparsity, *, previous: dict | None = None, of_remaining: bool = False) -> dict:
    """Per-layer masks keeping the largest ``|w|`` of each kernel.

    Args:
      model: a tf_keras model.
      sparsity: fraction of zero weights per kernel: one number, or ``{layer_name: fraction}``
        (layers not named keep their previous mask, or stay dense).
      previous: masks from an earlier round; pruned weights stay pruned.
      of_remaining: interpret ``sparsity`` as the fraction of the *surviving* weights to remove
        this round (the lottery-ticket "prune p% per round" rule) instead of an absolute target.

    Returns:
      ``{layer_name: bool ndarray shaped like the kernel}``.
    """
    previous = previous or {}
    masks = {}
    for layer in kernel_layers(model):
        if isinstance(sparsity, dict):
            if layer.name not in sparsity:
                if layer.name in previous:
                    masks[layer.name] = previous[layer.name]
                continue
            s = _check_sparsity(sparsity[layer.name], f"sparsity[{layer.name!r}]")
        else:
            s = _check_sparsity(sparsity, "sparsity")
        w = np.abs(layer.kernel.numpy())
        old = previous.get(layer.name, np.ones(w.shape, dtype=bool))
        alive = int(old.sum())
        n_zero = int(round(s * alive)) + (old.size - alive) if of_remaining else int(round(s * w.size))
        n_zero = max(n_zero, old.size - alive)
        if n_zero == 0:
            masks[layer.name] = old.copy()
            continue
        # rank surviving weights by magnitude; already-pruned ones sort first (score -1)
        score = np.where(old, w, -1.0).ravel()
        order = np.argsort(score, kind="stable")
        keep = np.ones(w.size, dtype=bool)
        keep[order[:n_zero]] = False
        masks[layer.name] = keep.reshape(w.shape)
    return masks


def apply_masks(model, masks: dict) -> None:
    """``kernel <- kernel * mask`` for every masked layer."""
    for name, mask in masks.items():
        layer = model.get_layer(name)
        layer.kernel.assign(layer.kernel * tf.constant(mask, dtype=layer.kernel.dtype))


def mask_sparsity(masks: dict) -> float:
    """Fraction of masked-out weights over all masked kernels."""
    total = sum(m.size for m in masks.values())
    return 1.0 - sum(int(m.sum()) for m in masks.values()) / total if total else 0.0


class MaskCallback(keras.callbacks.Callback):
    """Re-apply kernel masks at the start of training and after every training batch."""

    def __init__(self, masks: dict):
        super().__init__()
        self.masks = masks
        self._pairs = None
        self._step = None

    def _build(self):
        self._pairs = [(self.model.get_layer(n).kernel, tf.constant(m, dtype=tf.float32))
                       for n, m in self.masks.items()]

        @tf.function
        def step():
            for var, mask in self._pairs:
                var.assign(var * mask)

        self._step = step

    def on_train_begin(self, logs=None):
        self._build()
        self._step()

    def on_train_batch_end(self, batch, logs=None):
        self._step()
