"""Magnitude pruning through TF-MOT, made safe: custom layers, clear errors, honest sizes.

``prune`` wraps every layer TF-MOT can prune (built-in layers in its registry and layers that
implement ``tfmot.sparsity.keras.PrunableLayer`` / ``get_prunable_weights``); a custom layer that
holds weights but cannot be pruned is left as it is with a warning instead of crashing the whole
model. ``strip`` removes the wrappers; ``sparsity_report`` always measures the *stripped* weights
(what would be shipped); ``model_size`` reports the raw and gzipped file size, because a pruned
model is only smaller on disk once compressed (TF-MOT issue #722).

Magnitude pruning (Zhu & Gupta) zeroes, at each pruning step, the weights with the smallest
``|w|`` until the layer's sparsity reaches the schedule's value ``s_t``; with the polynomial
schedule ``s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (t_1 - t_0))^3``.

References:
  Zhu & Gupta, To prune, or not to prune, 2017, https://arxiv.org/abs/1710.01878
  Han et al., Learning both Weights and Connections for Efficient Neural Networks, 2015,
  https://arxiv.org/abs/1506.02626
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from tfrobust import _validate as V
from tfrobust._keras import check_tf_keras_model, keras, tf_keras_for_tfmot
from tfrobust.compression._tfmot import tfmot
from tfrobust.utils import atomic_save_model, markdown_table

__all__ = [
    "LayerSparsity",
    "SparsityReport",
    "model_size",
    "prune",
    "pruning_callbacks",
    "save",
    "sparsity_report",
    "strip",
    "wrapped_layers",
]

_SCHEDULES = ("constant", "polynomial")
_STRUCTURES = {None: None, "2:4": (2, 4), "1:4": (1, 4), "1:2": (1, 2)}


def _check_fraction(name, value, *, upper_inclusive=False):
    return V.fraction(name, value, open_max=not upper_inclusive)


def _check_step(name, value, *, allow_minus_one=False):
    return V.integer(name, value, minimum=-1 if allow_minus_one else 0)


def _check_functional(model, argument="model"):
    check_tf_keras_model(model, argument=argument)
    if not isinstance(model, keras.Sequential) and not getattr(model, "_is_graph_network", False):
        raise ValueError(
            f"`{argument}` is a subclassed keras.Model; pruning, quantization and clustering need a "
            "Sequential or functional model (they rebuild it layer by layer with clone_model). "
            f"Received: {argument}={type(model).__name__}")


def _is_wrapper(layer):
    tfmot()  # the guard: never import TF-MOT internals in a mixed-Keras process
    from tensorflow_model_optimization.python.core.clustering.keras.cluster_wrapper import (
        ClusterWeights,
    )
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import (
        PruneLowMagnitude,
    )

    return isinstance(layer, (PruneLowMagnitude, ClusterWeights))


def _prunable(layer):
    """'wrap' for layers TF-MOT prunes, 'skip' for weightless ones, 'refuse' for the rest."""
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry

    mot = tfmot()
    if isinstance(layer, mot.sparsity.keras.PrunableLayer) or hasattr(layer, "get_prunable_weights"):
        return "wrap"
    if PruneRegistry.supports(layer):
        return "wrap" if layer.weights else "skip"
    return "refuse" if layer.weights else "skip"


def prune(model, target_sparsity: float = 0.5, *, schedule: str = "constant", begin_step: int = 0,
          end_step: int = -1, frequency: int = 100, initial_sparsity: float = 0.0,
          structure: str | None = None):
    """Wrap a tf_keras model for magnitude pruning (fine-tune it with :func:`pruning_callbacks`).

    Args:
      model: a Sequential or functional tf_keras model; a Keras 3 one is first rebuilt as tf_keras
        with the same weights (:func:`tfrobust.utils.to_tf_keras`: TF-MOT wraps tf_keras layers
        only), so the pruned model is tf_keras.
      target_sparsity: final fraction of zero weights per pruned weight tensor, in [0, 1).
        With ``structure="2:4"`` the sparsity is fixed by the pattern (0.5) and this must be 0.5.
      schedule: ``"constant"`` (prune to ``target_sparsity`` from ``begin_step``, every
        ``frequency`` steps) or ``"polynomial"`` (cubic ramp from ``initial_sparsity`` at
        ``begin_step`` to ``target_sparsity`` at ``end_step``; needs ``end_step > begin_step``).
      begin_step, end_step: optimizer steps where pruning starts / stops (``-1``: never stops).
      frequency: steps between two mask updates.
      initial_sparsity: starting sparsity of the polynomial schedule.
      structure: ``None`` (unstructured) or an ``"m:n"`` pattern: m zeros in every n consecutive
        weights along the input-channel axis (``"2:4"`` is what sparse tensor cores accelerate).

    Returns:
      A new model whose prunable layers are wrapped in ``PruneLowMagnitude``. Custom layers with
      weights that implement neither ``PrunableLayer`` nor ``get_prunable_weights`` are left
      unpruned (a ``UserWarning`` names them).

    Raises:
      TypeError: ``model`` is not a tf_keras model (e.g. Keras 3).
      ValueError: bad arguments, a subclassed model, or a layer TF-MOT refuses (the message names
        the layer).
      RuntimeError: TF-MOT could not be imported on tf_keras (see ``compression._tfmot.tfmot``).
    """
    model = tf_keras_for_tfmot(model)  # Keras 3 input: rebuilt as tf_keras, the model TF-MOT wraps
    _check_functional(model)
    target_sparsity = _check_fraction("target_sparsity", target_sparsity)
    initial_sparsity = _check_fraction("initial_sparsity", initial_sparsity)
    if schedule not in _SCHEDULES:
        raise ValueError(f"`schedule` must be one of {_SCHEDULES}. Received: schedule={schedule!r}")
    _check_step("begin_step", begin_step)
    _check_step("end_step", end_step, allow_minus_one=True)
    V.integer("frequency", frequency, minimum=1)
    if schedule == "polynomial":
        if end_step <= begin_step:
            raise ValueError("`end_step` must be > begin_step for the polynomial schedule. "
                             f"Received: end_step={end_step!r}")
        if initial_sparsity > target_sparsity:
            raise ValueError("`initial_sparsity` must be <= target_sparsity. "
                             f"Received: initial_sparsity={initial_sparsity!r}")
    if structure not in _STRUCTURES:
        raise ValueError(f"`structure` must be one of {list(_STRUCTURES)}. Received: structure={structure!r}")
    m_by_n = _STRUCTURES[structure]
    if m_by_n is not None and abs(target_sparsity - m_by_n[0] / m_by_n[1]) > 1e-9:
        raise ValueError(
            f"`target_sparsity` must be {m_by_n[0] / m_by_n[1]} with structure={structure!r} (the "
            f"pattern fixes it). Received: target_sparsity={target_sparsity!r}")
    mot = tfmot()
    sk = mot.sparsity.keras
    if schedule == "constant":
        sched = sk.ConstantSparsity(target_sparsity, begin_step=begin_step, end_step=end_step,
                                    frequency=frequency)
    else:
        sched = sk.PolynomialDecay(initial_sparsity=initial_sparsity, final_sparsity=target_sparsity,
                                   begin_step=begin_step, end_step=end_step, frequency=frequency)
    skipped = []

    def clone(layer):
        if isinstance(layer, keras.Model):
            _check_functional(layer, argument=f"nested model {layer.name!r}")
            return keras.models.clone_model(layer, clone_function=clone)
        kind = _prunable(layer)
        if kind == "skip" or isinstance(layer, keras.layers.InputLayer):
            return layer.__class__.from_config(layer.get_config())
        if kind == "refuse":
            skipped.append(f"{layer.name} ({type(layer).__name__})")
            return layer.__class__.from_config(layer.get_config())
        try:
            return sk.prune_low_magnitude(layer.__class__.from_config(layer.get_config()),
                                          pruning_schedule=sched, sparsity_m_by_n=m_by_n)
        except ValueError as e:
            raise ValueError(f"TF-MOT refused to prune layer {layer.name!r} ({type(layer).__name__}): "
                             f"{e} Received: layer={layer.name!r}") from e

    pruned = keras.models.clone_model(model, clone_function=clone)
    _copy_weights(model, pruned)
    if skipped:
        warnings.warn(
            "these layers have weights but are not prunable by TF-MOT and were left dense: "
            f"{', '.join(skipped)}. Make them prunable by implementing "
            "tfmot.sparsity.keras.PrunableLayer.get_prunable_weights().", UserWarning, stacklevel=2)
    return pruned


def _copy_weights(src, dst):
    """Copy weights layer by layer (wrappers hold their inner layer's weights first)."""
    src_layers = {layer.name: layer for layer in src.layers}
    for layer in dst.layers:
        inner = layer.layer if hasattr(layer, "layer") and _is_wrapper(layer) else layer
        origin = src_layers.get(inner.name)
        if origin is None or not origin.weights:
            continue
        if isinstance(inner, keras.Model):
            _copy_weights(origin, inner)
        else:
            inner.set_weights(origin.get_weights())


def pruning_callbacks(log_dir: str | None = None) -> list:
    """Callbacks a pruned model needs in ``fit``: the step counter (and TensorBoard summaries).

    Args:
      log_dir: if given, also write per-layer sparsity summaries there.
    """
    sk = tfmot().sparsity.keras
    callbacks = [sk.UpdatePruningStep()]
    if log_dir is not None:
        callbacks.append(sk.PruningSummaries(log_dir=str(log_dir)))
    return callbacks


def prune_scope():
    """A scope in which a model saved *with* its pruning wrappers loads (TF-MOT's ``prune_scope``).

    Example:
      >>> with prune_scope():  # doctest: +SKIP
      ...     model = keras.models.load_model("pruned_unstripped.h5")
    """
    return tfmot().sparsity.keras.prune_scope()


def wrapped_layers(model) -> list[str]:
    """Names of layers still wrapped by TF-MOT pruning or clustering wrappers (nested models too)."""
    names = []
    for layer in model.layers:
        if _is_wrapper(layer):
            names.append(layer.name)
        elif isinstance(layer, keras.Model):
            names += [f"{layer.name}/{n}" for n in wrapped_layers(layer)]
    return names


def strip(model):
    """Remove pruning and clustering wrappers, keeping the (sparse / shared) weights.

    Returns:
      A new plain tf_keras model with the original layer names, ready to save or convert.
    """
    check_tf_keras_model(model)
    mot = tfmot()
    out = mot.sparsity.keras.strip_pruning(model)
    from tensorflow_model_optimization.python.core.clustering.keras.cluster_wrapper import (
        ClusterWeights,
    )

    if any(isinstance(layer, ClusterWeights) for layer in out.layers):
        out = mot.clustering.keras.strip_clustering(out)
    return out


def _warn_if_wrapped(model, action):
    names = wrapped_layers(model)
    if names:
        warnings.warn(
            f"{action}: the model still holds pruning/clustering wrappers ({', '.join(names)}); the "
            "file stores masks and dense copies and is *larger* than the model. Call "
            "tfrobust.compression.strip(model) first.", UserWarning, stacklevel=3)
    return names


@dataclasses.dataclass
class LayerSparsity:
    """Zeros of the prunable (>= 2-D, i.e. kernel) weights of one layer."""

    layer: str
    weights: int
    zeros: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.weights if self.weights else 0.0


@dataclasses.dataclass
class SparsityReport:
    """Per-layer and overall sparsity measured on stripped weights."""

    layers: list[LayerSparsity]

    @property
    def overall(self) -> float:
        total = sum(r.weights for r in self.layers)
        return sum(r.zeros for r in self.layers) / total if total else 0.0

    def by_layer(self) -> dict[str, float]:
        return {r.layer: r.sparsity for r in self.layers}

    def to_dict(self) -> dict:
        return {"overall": self.overall,
                "layers": [{"layer": r.layer, "weights": r.weights, "zeros": r.zeros,
                            "sparsity": r.sparsity} for r in self.layers]}

    def to_markdown(self) -> str:
        rows = [[r.layer, r.weights, r.zeros, f"{r.sparsity:.4f}"] for r in self.layers]
        rows.append(["**all**", sum(r.weights for r in self.layers), sum(r.zeros for r in self.layers),
                     f"{self.overall:.4f}"])
        return markdown_table(["layer", "weights", "zeros", "sparsity"], rows) + "\n"


def _kernel_sparsity(model, prefix=""):
    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            rows += _kernel_sparsity(layer, prefix=f"{prefix}{layer.name}/")
            continue
        kernels = [w.numpy() for w in layer.weights if len(w.shape) >= 2]
        if not kernels:
            continue
        size = int(sum(k.size for k in kernels))
        zeros = int(sum(np.count_nonzero(k == 0) for k in kernels))
        rows.append(LayerSparsity(f"{prefix}{layer.name}", size, zeros))
    return rows


def sparsity_report(model) -> SparsityReport:
    """Measure per-layer sparsity of the kernels (>= 2-D weights; biases are never pruned).

    If ``model`` still holds wrappers, the report is measured on ``strip(model)``: the wrapper's
    own kernel only becomes sparse at mask-update steps, the stripped weights are what ships.
    """
    check_tf_keras_model(model)
    if wrapped_layers(model):
        model = strip(model)
    return SparsityReport(_kernel_sparsity(model))


def _sizes(path: Path) -> dict:
    files = [path] if path.is_file() else [p for p in sorted(path.rglob("*")) if p.is_file()]
    raw = b"".join(p.read_bytes() for p in files)
    return {"raw_bytes": len(raw), "gzip_bytes": len(gzip.compress(raw, compresslevel=9))}


def save(model, path) -> dict:
    """Save ``model`` atomically (format from the suffix) and return its raw and gzipped size.

    Warns when pruning/clustering wrappers were not stripped first.

    Returns:
      ``{"path", "raw_bytes", "gzip_bytes", "wrapped_layers"}``.
    """
    check_tf_keras_model(model)
    names = _warn_if_wrapped(model, "save")
    path = atomic_save_model(model, path)
    return {"path": str(path), **_sizes(path), "wrapped_layers": names}


def model_size(model, *, fmt: str = ".h5") -> dict:
    """Raw and gzip-9 size in bytes of the model saved as ``fmt`` (``.h5`` or ``.keras``).

    Unstructured zeros do not shrink a dense file; they do shrink its gzip, which is the size
    that matters for a download. Warns when wrappers were not stripped.
    """
    check_tf_keras_model(model)
    if fmt not in (".h5", ".keras"):
        raise ValueError(f"`fmt` must be '.h5' or '.keras'. Received: fmt={fmt!r}")
    names = _warn_if_wrapped(model, "model_size")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"model{fmt}"
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*HDF5 file.*")
            model.save(os.fspath(path))
        return {**_sizes(path), "wrapped_layers": names}
