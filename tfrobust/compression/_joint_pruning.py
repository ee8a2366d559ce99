"""Joint pruning of weights and activations (JPnet) and exact MAC accounting.

JPnet prunes both operands of every multiply-accumulate: weights by magnitude masks, activations
by a per-layer threshold ``t_l`` applied after the ReLU, ``a = z * [z > t_l]`` (``t_l = 0`` is
the plain ReLU). Both are tightened together in stages while the network trains: at stage
``s = 1..S`` the weight masks reach ``w_l * s / S`` sparsity and each ``t_l`` is re-calibrated as
the quantile of that layer's activations on a training batch that gives ``a_l * s / S``
activation sparsity (when the ReLU already produces more zeros, ``t_l = 0``); then the network is
fine-tuned with the masks enforced and the thresholds fixed, so it learns to work with them.

The computation saved is counted exactly. A MAC ``x_i * w_ij`` does useful work only when both
operands are non-zero; per example,

- Dense: ``MACs_eff = sum_i [x_i != 0] * nnz(W[i, :])`` (dense: ``N_in * N_out``);
- Conv2D: ``MACs_eff = sum_{p, o} sum_{(u, v, c) in window(p)} [x_{p+(u,v), c} != 0] [W_{u,v,c,o} != 0]``,
  i.e. the convolution of the indicator of ``x`` with the indicator of ``W`` summed over all
  outputs (padding counts as zero activation); dense: ``H_out W_out k_h k_w C_in C_out``.

References:
  Yang et al., Joint Pruning on Activations and Weights for Efficient Neural Networks, 2019,
  https://arxiv.org/abs/1906.07875
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from tfrobust import _validate as V
from tfrobust._keras import check_tf_keras_model, keras
from tfrobust.compression._graph import replace_layers
from tfrobust.compression._masks import MaskCallback, kernel_layers, magnitude_masks
from tfrobust.data import as_tf_dataset
from tfrobust.utils import markdown_table

__all__ = ["ActivationThreshold", "JointPruningResult", "LayerMACs", "MACReport", "count_macs",
           "insert_activation_thresholds", "joint_prune"]


@keras.utils.register_keras_serializable(package="tfrobust")
class ActivationThreshold(keras.layers.Layer):
    """``y = x * [x > threshold]``: zero activations at or below a per-layer threshold.

    Placed after a ReLU it generalises it (threshold 0 is the ReLU). The threshold is a
    non-trainable weight, set by :func:`joint_prune`, saved with the model and converted to a
    TFLite ``GREATER``/``SELECT_V2`` pair (builtin ops, TFLite Micro has both).

    Args:
      threshold: initial threshold (>= 0).
    """

    def __init__(self, threshold: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.initial_threshold = V.number("threshold", threshold, minimum=0.0)

    def build(self, input_shape):
        self.threshold = self.add_weight(
            name="threshold", shape=(), trainable=False,
            initializer=keras.initializers.Constant(self.initial_threshold))
        super().build(input_shape)

    def call(self, inputs):
        return tf.where(inputs > self.threshold, inputs, tf.zeros_like(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "threshold": self.initial_threshold}


def _is_relu(layer):
    act = getattr(layer, "activation", None)
    return act is keras.activations.relu or getattr(act, "__name__", "") == "relu"


def insert_activation_thresholds(model):
    """Insert an :class:`ActivationThreshold` after every Dense/Conv2D layer with a ReLU activation.

    Returns:
      ``(new_model, names)``: the rewritten model (same weights) and ``{kernel_layer: threshold_layer}``.
    """
    check_tf_keras_model(model)

    def fn(layer):
        if layer in kernel_layers(model) and _is_relu(layer):
            return [layer.__class__.from_config(layer.get_config()),
                    ActivationThreshold(0.0, name=f"{layer.name}_jp_threshold")]
        return None

    new_model, replaced = replace_layers(model, fn)
    return new_model, {old: names[-1] for old, names in replaced.items()}


# ---------------------------------------------------------------------------------------------
# MAC accounting


@dataclasses.dataclass
class LayerMACs:
    """Dense and effective MACs of one layer, summed over the examples counted."""

    layer: str
    dense: int
    effective: int
    weight_sparsity: float
    input_sparsity: float

    @property
    def saved(self) -> float:
        return 1.0 - self.effective / self.dense if self.dense else 0.0


@dataclasses.dataclass
class MACReport:
    """Per-layer and total MACs over ``examples`` inputs."""

    layers: list[LayerMACs]
    examples: int

    @property
    def dense(self) -> int:
        return sum(r.dense for r in self.layers)

    @property
    def effective(self) -> int:
        return sum(r.effective for r in self.layers)

    @property
    def saved(self) -> float:
        return 1.0 - self.effective / self.dense if self.dense else 0.0

    def to_dict(self) -> dict:
        return {"examples": self.examples, "dense_macs": self.dense, "effective_macs": self.effective,
                "saved": self.saved, "layers": [{**dataclasses.asdict(r), "saved": r.saved}
                                                 for r in self.layers]}

    def to_markdown(self) -> str:
        n = max(self.examples, 1)
        rows = [[r.layer, f"{r.weight_sparsity:.2%}", f"{r.input_sparsity:.2%}", f"{r.dense / n:,.0f}",
                 f"{r.effective / n:,.0f}", f"{r.saved:.2%}"] for r in self.layers]
        rows.append(["**total**", "", "", f"{self.dense / n:,.0f}", f"{self.effective / n:,.0f}",
                     f"**{self.saved:.2%}**"])
        return markdown_table(["layer", "weight sparsity", "input activation sparsity", "dense MACs/example",
                               "effective MACs/example", "saved"], rows) + "\n"


def _layer_macs(layer, x):
    """(dense, effective, nonzero inputs, inputs) for one batch ``x`` entering ``layer``."""
    w = layer.kernel.numpy()
    nz_w = (w != 0).astype(np.float32)
    xi = tf.cast(tf.not_equal(x, 0), tf.float32)
    n = int(x.shape[0])
    if isinstance(layer, keras.layers.Dense):
        xi2 = tf.reshape(xi, [-1, w.shape[0]])
        rows = int(xi2.shape[0])
        dense = rows * w.shape[0] * w.shape[1]
        eff = float(np.dot(tf.reduce_sum(xi2, 0).numpy().astype(np.float64), nz_w.sum(1).astype(np.float64)))
    elif isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D):
        if layer.groups != 1 or layer.data_format != "channels_last":
            raise ValueError(f"MAC counting supports Conv2D with groups=1, channels_last. "
                             f"Received: layer={layer.name!r}")
        out = tf.nn.conv2d(xi, tf.constant(nz_w), strides=layer.strides, padding=layer.padding.upper(),
                           dilations=layer.dilation_rate)
        h, wd, cout = out.shape[1], out.shape[2], out.shape[3]
        dense = n * h * wd * w.shape[0] * w.shape[1] * w.shape[2] * cout
        eff = float(np.sum(out.numpy().astype(np.float64)))
    else:
        raise ValueError(f"MAC counting supports Dense and Conv2D layers. Received: layer={layer.name!r} "
                         f"({type(layer).__name__})")
    return dense, int(round(eff)), int(tf.reduce_sum(xi).numpy()), int(np.prod(x.shape))


def count_macs(model, x, *, batch_size: int = 256) -> MACReport:
    """Count dense MACs and MACs touching a non-zero weight *and* a non-zero activation on ``x``.

    Args:
      model: a functional/Sequential tf_keras model; every Dense and Conv2D layer is counted.
      x: input images (the activations are measured on them).
      batch_size: batch size of the forward passes.
    """
    check_tf_keras_model(model)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"`x` must be a non-empty batch. Received: x.shape={x.shape}")
    layers = [layer for layer in model.layers if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D))]
    probe = keras.Model(model.inputs, [layer.input for layer in layers])
    totals = {layer.name: [0, 0, 0, 0] for layer in layers}
    for start in range(0, len(x), batch_size):
        inputs = probe(x[start:start + batch_size], training=False)
        if len(layers) == 1:
            inputs = [inputs]
        for layer, a in zip(layers, inputs):
            for i, v in enumerate(_layer_macs(layer, a)):
                totals[layer.name][i] += v
    rows = []
    for layer in layers:
        dense, eff, nz, size = totals[layer.name]
        w = layer.kernel.numpy()
        rows.append(LayerMACs(layer.name, dense, eff, float(np.mean(w == 0)), 1.0 - nz / size))
    return MACReport(rows, len(x))


# ---------------------------------------------------------------------------------------------
# joint pruning


@dataclasses.dataclass
class JointPruningResult:
    """The jointly pruned model, its masks and thresholds, and the MAC report on test data."""

    model: object
    masks: dict
    thresholds: dict
    activation_sparsity: dict
    macs: MACReport | None

    def to_dict(self) -> dict:
        return {"thresholds": self.thresholds, "activation_sparsity": self.activation_sparsity,
                "macs": self.macs.to_dict() if self.macs else None}


def _per_layer(value, names, what):
    if isinstance(value, dict):
        unknown = set(value) - set(names)
        if unknown:
            raise ValueError(f"`{what}` names unknown layers {sorted(unknown)}. Received: {what}={value!r}")
        return {n: float(value.get(n, 0.0)) for n in names}
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{what}` must be in [0, 1) or a dict of such by layer. Received: {what}={value!r}")
    return {n: float(value) for n in names}


def calibrate_thresholds(model, thresholds: dict, x, sparsity: dict) -> dict:
    """Set each threshold to the activation quantile giving the wanted sparsity; return it measured."""
    layers = [model.get_layer(thresholds[k]) for k in thresholds]
    probe = keras.Model(model.inputs, [layer.input for layer in layers])
    acts = probe(x, training=False)
    if len(layers) == 1:
        acts = [acts]
    measured = {}
    for (kernel_name, _), layer, a in zip(thresholds.items(), layers, acts):
        a = a.numpy().ravel()
        q = sparsity[kernel_name]
        t = float(np.quantile(a, q)) if q > 0 else 0.0
        layer.threshold.assign(max(t, 0.0))
        measured[layer.name] = float(np.mean(a <= max(t, 0.0)))
    return measured


def joint_prune(model, x, y, *, weight_sparsity=0.7, activation_sparsity=0.5, stages: int = 3,
                epochs_per_stage: int = 1, lr: float = 5e-4, batch_size: int = 128,
                calibration_size: int = 1024, x_test=None, seed: int = 0, skip_last: bool = True):
    """JPnet: prune weights (magnitude masks) and activations (per-layer thresholds) jointly.

    Args:
      model: a trained tf_keras logits model (not modified; a rewritten copy is returned).
      x, y: training data for the fine-tuning stages (and threshold calibration).
      weight_sparsity: final kernel sparsity, one number or ``{layer: fraction}``.
      activation_sparsity: final fraction of zeroed activations after each ReLU layer, one number
        or ``{kernel_layer: fraction}`` (layers without ReLU are not thresholded).
      stages: number of tighten-then-fine-tune stages (linear ramp to the targets).
      epochs_per_stage: fine-tuning epochs per stage.
      lr: Adam learning rate.
      batch_size: batch size.
      calibration_size: training images used to set the thresholds.
      x_test: if given, MACs and activation sparsity are measured on it.
      seed: shuffling seed.
      skip_last: leave the last kernel layer's weights dense (the paper prunes it less; it is tiny).

    Returns:
      :class:`JointPruningResult`.
    """
    check_tf_keras_model(model)
    for name, v in (("stages", stages), ("epochs_per_stage", epochs_per_stage), ("batch_size", batch_size),
                    ("calibration_size", calibration_size)):
        V.integer(name, v, minimum=1)
    jp_model, thresholds = insert_activation_thresholds(model)
    names = [layer.name for layer in kernel_layers(jp_model)]
    w_targets = _per_layer(weight_sparsity, names, "weight_sparsity")
    if skip_last and names:
        w_targets[names[-1]] = 0.0
    a_targets = _per_layer(activation_sparsity, list(thresholds), "activation_sparsity")
    jp_model.compile(optimizer=keras.optimizers.Adam(lr),
                     loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    ds = as_tf_dataset(x, y, batch_size=batch_size, shuffle=True, seed=seed)
    calib = np.asarray(x[:calibration_size], np.float32)
    masks, measured = {}, {}
    for s in range(1, stages + 1):
        masks = magnitude_masks(jp_model, {n: v * s / stages for n, v in w_targets.items()}, previous=masks)
        for n, m in masks.items():
            jp_model.get_layer(n).kernel.assign(jp_model.get_layer(n).kernel * m)
        measured = calibrate_thresholds(jp_model, thresholds, calib,
                                        {k: v * s / stages for k, v in a_targets.items()})
        jp_model.fit(ds, epochs=epochs_per_stage, callbacks=[MaskCallback(masks)], verbose=0)
    values = {thresholds[k]: float(jp_model.get_layer(thresholds[k]).threshold.numpy()) for k in thresholds}
    macs = count_macs(jp_model, x_test) if x_test is not None else None
    if x_test is not None:
        measured = _threshold_sparsity(jp_model, thresholds, x_test)
    return JointPruningResult(jp_model, masks, values, measured, macs)


def _threshold_sparsity(model, thresholds, x, batch_size=512):
    layers = [model.get_layer(v) for v in thresholds.values()]
    probe = keras.Model(model.inputs, [layer.output for layer in layers])
    zeros = np.zeros(len(layers))
    total = np.zeros(len(layers))
    for start in range(0, len(x), batch_size):
        outs = probe(np.asarray(x[start:start + batch_size], np.float32), training=False)
        if len(layers) == 1:
            outs = [outs]
        for i, o in enumerate(outs):
            zeros[i] += float(tf.reduce_sum(tf.cast(tf.equal(o, 0), tf.float32)))
            total[i] += float(tf.size(o))
    return {layer.name: float(z / t) for layer, z, t in zip(layers, zeros, total)}
