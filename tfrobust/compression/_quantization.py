"""Quantization-aware training (QAT) and weight clustering through TF-MOT, custom layers included.

QAT inserts fake-quantization nodes so training sees the int8 rounding the deployed model will do:
``q(x) = s * clip(round(x / s) + z, -128, 127) - s * z`` with a scale ``s`` and zero point ``z``
learned from moving min/max (activations) or per-channel min/max (weights); gradients pass
through ``round`` unchanged (straight-through estimator).

Built-in layers use TF-MOT's default 8-bit scheme. A tfrobust (or user) custom layer quantizes
end to end once a ``QuantizeConfig`` is registered for its class with
:func:`register_quantize_config`; layers without one are left in float with a warning.

Collaborative QAT (TF-MOT's ``experimental.combine`` schemes, picked with ``quantize(preserve=...)``)
keeps what pruning and clustering did through the fake-quantized fine-tuning: plain QAT trains
every weight, so zeros come back and shared values drift apart. PQAT multiplies the weight by its
fixed pruning mask ``m = (w != 0)`` before quantization; CQAT keeps the cluster assignment ``a(i)``
fixed and trains only the centroids (``w_i = c_{a(i)}``), optionally with ``c = 0`` pinned for
pruned weights (PCQAT).

Clustering (weight sharing) replaces each weight tensor by ``k`` shared values: ``w_i <- c_{a(i)}``,
``a(i) = argmin_j |w_i - c_j|``, centroids fine-tuned by the sum of their members' gradients.

References:
  Jacob et al., Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
  Inference, CVPR 2018, https://arxiv.org/abs/1712.05877
  Han et al., Deep Compression, ICLR 2016, https://arxiv.org/abs/1510.00149
  TF-MOT collaborative optimization (PQAT, CQAT, PCQAT),
  https://www.tensorflow.org/model_optimization/guide/combine/collaborative_optimization
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np

from tfrobust import _validate
from tfrobust._keras import keras, tf_keras_for_tfmot
from tfrobust.compression._joint_pruning import ActivationThreshold
from tfrobust.compression._pruning import _check_functional, wrapped_layers
from tfrobust.compression._tfmot import tfmot
from tfrobust.layers import KWinnersTakeAll, WTADropout

__all__ = [
    "PRESERVE",
    "cluster",
    "output_quantize_config_class",
    "quantize",
    "quantize_config_for",
    "quantize_scope",
    "register_quantize_config",
    "registered_quantize_configs",
]

# layer class -> factory(layer) -> QuantizeConfig. A registry, not a mutable default argument.
_QUANTIZE_CONFIGS: dict[type, object] = {}


def register_quantize_config(layer_cls, config) -> None:
    """Register how a custom layer class is quantized in :func:`quantize`.

    Args:
      layer_cls: a ``keras.layers.Layer`` subclass (subclasses of it inherit the entry).
      config: a ``tfmot.quantization.keras.QuantizeConfig`` subclass (instantiated with no
        arguments per layer), an instance, or a callable ``config(layer) -> QuantizeConfig``.

    Example:
      >>> class OutputOnly(tfmot.quantization.keras.QuantizeConfig):   # doctest: +SKIP
      ...     def get_weights_and_quantizers(self, layer): return []
      ...     def get_activations_and_quantizers(self, layer): return []
      ...     def set_quantize_weights(self, layer, w): pass
      ...     def set_quantize_activations(self, layer, a): pass
      ...     def get_output_quantizers(self, layer):
      ...         return [tfmot.quantization.keras.quantizers.MovingAverageQuantizer(
      ...             num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]
      ...     def get_config(self): return {}
      >>> register_quantize_config(KWTA, OutputOnly)                  # doctest: +SKIP
    """
    if not (inspect.isclass(layer_cls) and issubclass(layer_cls, keras.layers.Layer)):
        raise TypeError("`layer_cls` must be a tf_keras Layer subclass. "
                        f"Received: layer_cls={layer_cls!r}")
    qc = tfmot().quantization.keras.QuantizeConfig
    if not (isinstance(config, qc) or (inspect.isclass(config) and issubclass(config, qc))
            or (callable(config) and not inspect.isclass(config))):
        raise TypeError("`config` must be a QuantizeConfig subclass or instance, or a callable "
                        f"layer -> QuantizeConfig. Received: config={config!r}")
    _QUANTIZE_CONFIGS[layer_cls] = config


_OUTPUT_CONFIG = []  # the class, built on first use (it subclasses a TF-MOT class)


def output_quantize_config_class():
    """A ``QuantizeConfig`` class that quantizes only a layer's output to 8 bits.

    Right for weightless, activation-like layers whose output range is what matters (k-WTA,
    WTA-dropout, :class:`~tfrobust.compression.ActivationThreshold`): the int8 TFLite model then
    carries the layer between quantized tensors. It is registered by default for those tfrobust
    layers; register it for your own with ``register_quantize_config(MyLayer,
    output_quantize_config_class())``.
    """
    if not _OUTPUT_CONFIG:
        qk = tfmot().quantization.keras

        class OutputQuantizeConfig(qk.QuantizeConfig):
            """Quantize the output only (moving-average min/max, asymmetric, 8 bits)."""

            def get_weights_and_quantizers(self, layer):
                return []

            def get_activations_and_quantizers(self, layer):
                return []

            def set_quantize_weights(self, layer, quantize_weights):
                pass

            def set_quantize_activations(self, layer, quantize_activations):
                pass

            def get_output_quantizers(self, layer):
                return [qk.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                                             narrow_range=False)]

            def get_config(self):
                return {}

        _OUTPUT_CONFIG.append(OutputQuantizeConfig)
    return _OUTPUT_CONFIG[0]


def _register_tfrobust_layers():
    """Default configs for tfrobust's weightless activation layers (user registrations win)."""
    targets = [ActivationThreshold, KWinnersTakeAll, WTADropout]
    for cls in targets:
        _QUANTIZE_CONFIGS.setdefault(cls, output_quantize_config_class())


def registered_quantize_configs() -> dict:
    """A copy of the registry: layer class -> registered config."""
    _register_tfrobust_layers()
    return dict(_QUANTIZE_CONFIGS)


def quantize_config_for(layer):
    """The registered QuantizeConfig instance for ``layer`` (MRO lookup), or None."""
    _register_tfrobust_layers()
    qc = tfmot().quantization.keras.QuantizeConfig
    for cls in type(layer).__mro__:
        if cls in _QUANTIZE_CONFIGS:
            entry = _QUANTIZE_CONFIGS[cls]
            if isinstance(entry, qc):
                return entry
            config = entry() if inspect.isclass(entry) else entry(layer)
            if not isinstance(config, qc):
                raise TypeError(f"the config registered for {cls.__name__} returned {config!r}, "
                                f"not a QuantizeConfig. Received: layer={layer.name!r}")
            return config
    return None


def _custom_objects(model, extra=None):
    """Classes to deserialize a (quantized) model: its custom layers and registered configs."""
    objects = dict(extra or {})
    for entry in _QUANTIZE_CONFIGS.values():
        cls = entry if inspect.isclass(entry) else type(entry)
        if not inspect.isfunction(entry):
            objects[cls.__name__] = cls
    for layer in _all_layers(model):
        cls = type(layer)
        if not cls.__module__.startswith(("tf_keras", "tensorflow")):
            objects[cls.__name__] = cls
    return objects


def _all_layers(model):
    for layer in model.layers:
        yield layer
        inner = getattr(layer, "layer", None)  # TF-MOT wrappers hold the user's layer
        if isinstance(inner, keras.layers.Layer):
            yield inner
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def quantize_scope(model=None, custom_objects=None):
    """``tfmot.quantization.keras.quantize_scope`` with the registered configs and ``model``'s
    custom layer classes, for loading a QAT model: ``with quantize_scope(): load_model(path)``."""
    _register_tfrobust_layers()
    objects = _custom_objects(model, custom_objects) if model is not None else {
        **{(e if inspect.isclass(e) else type(e)).__name__: (e if inspect.isclass(e) else type(e))
           for e in _QUANTIZE_CONFIGS.values() if not inspect.isfunction(e)},
        **(custom_objects or {})}
    return tfmot().quantization.keras.quantize_scope(objects)


#: ``quantize(preserve=...)`` values: what the QAT fine-tuning must keep of earlier compression.
PRESERVE = (None, "sparsity", "clusters", "sparsity_and_clusters")
# A kernel with more distinct values than this was not clustered: CQAT would make one centroid per
# value (TF-MOT then skips the layer with a warning), so it is refused up front.
_MAX_CQAT_VALUES = 256


def _scheme(preserve):
    """The TF-MOT ``QuantizeScheme`` for ``preserve`` (None: the default 8-bit scheme)."""
    combine = tfmot().experimental.combine
    if preserve == "sparsity":
        return combine.Default8BitPrunePreserveQuantizeScheme()
    if preserve in ("clusters", "sparsity_and_clusters"):
        return combine.Default8BitClusterPreserveQuantizeScheme(
            preserve_sparsity=preserve == "sparsity_and_clusters")
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_scheme,
    )

    return default_8bit_quantize_scheme.Default8BitQuantizeScheme()


def _check_preserve(model, preserve):
    _validate.choice("preserve", preserve, PRESERVE)
    if preserve is None:
        return
    names = wrapped_layers(model)
    if names:
        raise ValueError(f"`preserve={preserve!r}` needs a stripped model, but these layers still hold "
                         f"pruning/clustering wrappers: {', '.join(names)}. Call "
                         f"tfrobust.compression.strip(model) first. Received: preserve={preserve!r}")
    if "clusters" in preserve:
        for layer in model.layers:
            for w in layer.weights:
                if len(w.shape) >= 2 and w.shape.num_elements() > _MAX_CQAT_VALUES:
                    n = len(np.unique(w.numpy()))
                    if n > _MAX_CQAT_VALUES:
                        raise ValueError(
                            f"`preserve={preserve!r}` needs clustered kernels, but {layer.name!r} "
                            f"has {n} distinct values in {w.name!r}. Cluster first: "
                            "strip(fine-tuned cluster(model, k)), then quantize. "
                            f"Received: preserve={preserve!r}")


def quantize(model, *, preserve: str | None = None, custom_objects: dict | None = None):
    """Make a tf_keras model quantization-aware (8-bit weights and activations).

    A Keras 3 model is first rebuilt as tf_keras with the same weights
    (:func:`tfrobust.utils.to_tf_keras`): TF-MOT 0.8 wraps tf_keras layers only, so the result is
    a tf_keras model, which ``tfrobust.tflite_tools.convert`` ships like any other.

    Built-in layers get TF-MOT's default 8-bit configs; a layer whose class (or a base class) was
    registered with :func:`register_quantize_config` gets that config; any other layer that TF-MOT
    does not support is left in float, with a ``UserWarning`` naming it (the int8 TFLite model
    then keeps a float island around it, which TFLite Micro may not run).

    ``preserve`` picks a collaborative scheme that keeps earlier compression through QAT (plain
    QAT regrows pruned weights: a 50%-pruned CNN shipped with 4-38% zeros per kernel):

    * ``"sparsity"`` (PQAT): every zero weight stays zero; the deployed kernels keep the sparsity;
    * ``"clusters"`` (CQAT): only the shared values train, so each int8 kernel keeps at most ``k``
      values (per output channel for per-channel quantized convolutions) -- what
      :func:`tfrobust.tflite_tools.compress_lut` needs;
    * ``"sparsity_and_clusters"`` (PCQAT): both, for a model pruned then clustered with
      ``cluster(..., preserve_sparsity=True)``.

    TF-MOT creates CQAT's cluster variables when the layer is built, so a CQAT model does not
    reload from a saved file: convert it in the process that trained it.

    Args:
      model: a Sequential or functional tf_keras model (stripped, for ``preserve``).
      preserve: None (plain QAT), ``"sparsity"``, ``"clusters"`` or ``"sparsity_and_clusters"``.
      custom_objects: extra classes needed to rebuild the model.

    Returns:
      The QAT model (compile and fine-tune it, then convert with ``Optimize.DEFAULT``).

    Raises:
      TypeError: not a tf_keras model.
      ValueError: a subclassed model, a layer TF-MOT refuses (named in the message), an unknown
        ``preserve``, a model still holding pruning/clustering wrappers, or (clusters) a kernel
        that was not clustered.

    Example:
      >>> pruned = strip(fine_tuned(prune(model, 0.5)))       # doctest: +SKIP
      >>> qat = quantize(pruned, preserve="sparsity")         # doctest: +SKIP
      >>> qat.compile(...); qat.fit(x, y, epochs=1)           # doctest: +SKIP
      >>> kernel_stats(convert(qat, "int8", x[:300]))[0].sparsity  # doctest: +SKIP
      0.5
    """
    model = tf_keras_for_tfmot(model)  # Keras 3 input: rebuilt as tf_keras, the model TF-MOT wraps
    _check_functional(model)
    _check_preserve(model, preserve)
    qk = tfmot().quantization.keras
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )

    registry = default_8bit_quantize_registry.Default8BitQuantizeRegistry()
    left_float = []

    def clone(layer):
        copy = layer.__class__.from_config(layer.get_config())
        if isinstance(layer, keras.Model):
            raise ValueError(f"nested models are not supported by TF-MOT QAT; flatten "
                             f"{layer.name!r} into the outer model. Received: layer={layer.name!r}")
        config = quantize_config_for(layer)
        try:
            if config is not None:
                return qk.quantize_annotate_layer(copy, quantize_config=config)
            if registry.supports(layer):
                return qk.quantize_annotate_layer(copy)
        except ValueError as e:
            raise ValueError(f"TF-MOT refused to quantize layer {layer.name!r} "
                             f"({type(layer).__name__}): {e} Received: layer={layer.name!r}") from e
        left_float.append(f"{layer.name} ({type(layer).__name__})")
        return copy

    annotated = keras.models.clone_model(model, clone_function=clone)
    annotated.set_weights(model.get_weights())
    if left_float:
        warnings.warn(
            "these layers have no QuantizeConfig and stay float in the QAT model: "
            f"{', '.join(left_float)}. Register one with "
            "tfrobust.compression.register_quantize_config(LayerClass, config).",
            UserWarning, stacklevel=2)
    with qk.quantize_scope(_custom_objects(model, custom_objects)):
        try:
            return qk.quantize_apply(annotated, _scheme(preserve))
        except (ValueError, RuntimeError) as e:
            raise ValueError(f"TF-MOT could not apply quantization to {model.name!r}: {e} "
                             f"Received: model={model.name!r}") from e


_INITS = ("linear", "kmeans++", "density", "random")


def cluster(model, number_of_clusters: int, *, init: str = "linear", preserve_sparsity: bool = False):
    """Wrap a tf_keras model for weight clustering (TF-MOT ``cluster_weights``).

    A Keras 3 model is first rebuilt as tf_keras (:func:`tfrobust.utils.to_tf_keras`), as in
    :func:`quantize`.

    Each clusterable weight tensor is limited to ``number_of_clusters`` shared values; fine-tune,
    then :func:`tfrobust.compression.strip` to get plain layers holding the shared values.
    Layers whose kernel has no more weights than clusters, and custom layers that are not
    ``ClusterableLayer``, are left alone (a ``UserWarning`` names the custom ones).

    Args:
      model: a Sequential or functional tf_keras model.
      number_of_clusters: k >= 2 shared values per weight tensor.
      init: centroid initialisation: ``"linear"`` (evenly spaced between min and max, the best
        choice in Deep Compression), ``"kmeans++"``, ``"density"`` or ``"random"``.
      preserve_sparsity: keep pruned zeros at zero (cluster a pruned model).
    """
    model = tf_keras_for_tfmot(model)  # Keras 3 input: rebuilt as tf_keras, the model TF-MOT wraps
    _check_functional(model)
    if not isinstance(number_of_clusters, int) or isinstance(number_of_clusters, bool) \
            or number_of_clusters < 2:
        raise ValueError("`number_of_clusters` must be an int >= 2. "
                         f"Received: number_of_clusters={number_of_clusters!r}")
    if init not in _INITS:
        raise ValueError(f"`init` must be one of {_INITS}. Received: init={init!r}")
    ck = tfmot().clustering.keras
    from tensorflow_model_optimization.python.core.clustering.keras.clustering_registry import (
        ClusteringRegistry,
    )

    inits = {"linear": ck.CentroidInitialization.LINEAR,
             "kmeans++": ck.CentroidInitialization.KMEANS_PLUS_PLUS,
             "density": ck.CentroidInitialization.DENSITY_BASED,
             "random": ck.CentroidInitialization.RANDOM}
    skipped = []

    def clone(layer):
        copy = layer.__class__.from_config(layer.get_config())
        kernels = [w for w in layer.weights if len(w.shape) >= 2]
        supported = isinstance(layer, ck.ClusterableLayer) or ClusteringRegistry.supports(layer)
        if not kernels:
            return copy
        if not supported:
            skipped.append(f"{layer.name} ({type(layer).__name__})")
            return copy
        if min(int(w.shape.num_elements()) for w in kernels) <= number_of_clusters:
            return copy
        # Centroids are initialised from the weights when the wrapper is built, so the copy
        # must hold the trained weights before it is wrapped.
        copy.build(layer.input_shape)
        copy.set_weights(layer.get_weights())
        try:
            return ck.cluster_weights(copy, number_of_clusters=number_of_clusters,
                                      cluster_centroids_init=inits[init],
                                      preserve_sparsity=preserve_sparsity)
        except ValueError as e:
            raise ValueError(f"TF-MOT refused to cluster layer {layer.name!r} "
                             f"({type(layer).__name__}): {e} Received: layer={layer.name!r}") from e

    clustered = keras.models.clone_model(model, clone_function=clone)
    for layer in clustered.layers:  # unwrapped layers still need their trained weights
        if layer.weights and not hasattr(layer, "layer"):
            layer.set_weights(model.get_layer(layer.name).get_weights())
    if skipped:
        warnings.warn("these layers have weights but are not clusterable and were left as they are: "
                      f"{', '.join(skipped)}. Implement tfmot.clustering.keras.ClusterableLayer.",
                      UserWarning, stacklevel=2)
    return clustered

