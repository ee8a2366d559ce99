"""Structured pruning: remove whole neurons / channels and rebuild a narrower Keras model.

Unstructured zeros do not shrink a ``.tflite`` (TFLite and TFLite Micro store and run kernels
dense); removing units does. A *unit* is a Dense neuron or an output channel of a Conv1D/Conv2D
(the "producers"). Removing unit ``j`` of a producer deletes column ``j`` of its kernel and its
bias, and everything downstream that is indexed by that channel:

- BatchNormalization (gamma, beta, moving mean / variance), PReLU alphas, DepthwiseConv2D
  filters (channel ``c`` -> outputs ``c * m .. c * m + m - 1`` for depth multiplier ``m``), CAS
  probe rows, element-wise layers (activations, dropout, noise, SAP, pooling, padding) pass the
  channel through;
- the next Dense / Conv input rows; through ``Flatten`` the rows ``p * C + c`` of every spatial
  position ``p`` (NHWC flattening is row-major with the channel fastest);
- ``Concatenate`` (last axis) offsets the kept channels of each input;
- ``Add`` / ``Subtract`` / ``Multiply`` / ``Average`` / ``Maximum`` / ``Minimum`` need the same
  channels on every input, so the producers meeting there form a *group* pruned together with one
  score (a residual stage is one group). A group fed by the model input or by a layer that cannot
  be pruned is left alone, or refused with a ``ValueError`` naming the merge layer when asked for.

The producer of the model's output (the logits) is never pruned. Layers that mix channels in a
way a slice cannot preserve (k-WTA, CIFS, SE, CBAM, LRN, GroupConv2D, binary layers, Reshape,
...) are refused with a ``ValueError`` naming the layer when removed channels reach them.

Importance of unit ``j`` (higher = kept):

- ``"l1"`` / ``"l2"``: ``||W[..., j]||_1`` (Li et al. 2017) or ``||W[..., j]||_2`` of its kernel;
- ``"apoz"``: ``1 - APoZ_j`` with the *average percentage of zeros* of its activation over
  ``N`` examples and ``M`` positions (Hu et al. 2016, the design notes' zero frequency),
  ``APoZ_j = sum_k sum_m [a_j(k, m) = 0] / (N M)``, measured after the unit's ReLU (the end of
  its chain of BatchNorm / activation layers);
- ``"activation"``: the mean ``|a_j|`` over the same examples and positions;
- robustness-aware: with ``eps``, the data scores are measured on PGD adversarial examples of
  ``x`` (L-inf, ``steps`` steps of ``2.5 eps / steps``), so units that stay active under attack
  are kept.

Retraining after pruning uses the dropout ratio adjustment of Han et al. (2015),
``D_r = D_o sqrt(C_ir / C_io)``, with ``C_i`` the number of connections (kernel weights) of the
layer whose outputs the dropout acts on, ``o`` original and ``r`` after pruning.

References:
  Hu et al., Network Trimming: A Data-Driven Neuron Pruning Approach, 2016,
  https://arxiv.org/abs/1607.03250
  Li et al., Pruning Filters for Efficient ConvNets, ICLR 2017, https://arxiv.org/abs/1608.08710
  Han et al., Learning both Weights and Connections for Efficient Neural Networks, NeurIPS 2015,
  https://arxiv.org/abs/1506.02626
  Liu et al., Rethinking the Value of Network Pruning, ICLR 2019, https://arxiv.org/abs/1810.05270
"""

from __future__ import annotations

import copy
import dataclasses
import math
import numbers
import time

import numpy as np
import tensorflow as tf

from tfrobust import _validate as V
from tfrobust import attacks, evaluation
from tfrobust._keras import check_tf_keras_model, keras
from tfrobust.compression._joint_pruning import ActivationThreshold
from tfrobust.compression._lottery import _fresh
from tfrobust.data import as_tf_dataset
from tfrobust.layers import (
    ChannelActivationSuppressing,
    RandomNoisyActivations,
    RandomScaledActivations,
    ScaledWSConv2D,
    StochasticActivationPruning,
)
from tfrobust.trainers import AdversarialTrainer
from tfrobust.utils import markdown_table

__all__ = ["IterativePruningResult", "ScratchResult", "UnitPruningResult", "adjust_dropout_rate",
           "apoz", "prune_units", "prune_units_iteratively", "scratch_baselines", "unit_importance"]

SCORES = ("l1", "l2", "apoz", "activation")

_L = keras.layers
_TRANSPOSED = (_L.Conv1DTranspose, _L.Conv2DTranspose, _L.Conv3DTranspose)
_MERGES = (_L.Add, _L.Subtract, _L.Multiply, _L.Average, _L.Maximum, _L.Minimum)
_ACTIVATIONS = (_L.Activation, _L.ReLU, _L.LeakyReLU, _L.ELU, _L.ThresholdedReLU, _L.PReLU,
                ActivationThreshold)
# Element-wise or per-channel-independent layers whose channel axis passes through unchanged.
_PASS = (_L.Dropout, _L.GaussianNoise, _L.GaussianDropout, _L.AlphaDropout, _L.ActivityRegularization,
         _L.MaxPooling1D, _L.MaxPooling2D, _L.AveragePooling1D, _L.AveragePooling2D,
         _L.GlobalAveragePooling1D, _L.GlobalAveragePooling2D, _L.GlobalMaxPooling1D, _L.GlobalMaxPooling2D,
         _L.ZeroPadding1D, _L.ZeroPadding2D, _L.Cropping1D, _L.Cropping2D, _L.UpSampling1D, _L.UpSampling2D,
         StochasticActivationPruning, RandomNoisyActivations, RandomScaledActivations)
# Why some tfrobust / Keras layers cannot take a pruned input (the default reason is generic).
_REFUSALS = {
    "KWinnersTakeAll": "it keeps the top k of *all* units, so removing units changes the winners",
    "WTADropout": "it keeps the top channels of *all* channels, so removing channels changes the winners",
    "ChannelImportanceFeatureSelection": "its channel mask is a softmax over all channels",
    "SqueezeExcitation": "it mixes all channels in its excitation MLP",
    "CBAM": "it mixes all channels in its attention MLP",
    "LocalResponseNormalization": "it normalises each channel by its neighbours",
    "GroupConv2D": "its groups partition the channels",
    "ChannelShuffle": "it permutes channels across groups",
    "ScaledWSConv2D": "it standardises each filter over all its input channels; prune its input producer "
                      "before adding weight standardisation, or leave that producer unpruned",
    "BinaryDense": "its per-output scale is the mean |w| over all inputs; prune the float model, "
                   "then binarize",
    "BinaryConv2D": "its per-output scale is the mean |w| over all inputs; prune the float model, "
                    "then binarize",
    "Softmax": "it normalises over all channels",
    "LayerNormalization": "it normalises over all channels",
}


# ---------------------------------------------------------------------------------------------
# Pure helpers


def adjust_dropout_rate(rate: float, connections_original: int, connections_pruned: int) -> float:
    """Han et al.'s dropout ratio adjustment for retraining a pruned layer.

    ``D_r = D_o * sqrt(C_ir / C_io)``: a layer with fewer connections has less capacity to
    overfit, so it is retrained with proportionally less dropout (connections vary quadratically
    with the neurons, hence the square root).

    Args:
      rate: the original dropout rate ``D_o`` in [0, 1).
      connections_original: ``C_io``, connections (kernel weights) of the layer before pruning (> 0).
      connections_pruned: ``C_ir``, after pruning (0 <= C_ir <= C_io).

    Returns:
      ``D_r``.

    Example:
      >>> round(adjust_dropout_rate(0.5, 1000, 250), 4)
      0.25
    """
    rate = V.number("rate", rate, minimum=0.0, maximum=1.0, open_max=True)
    V.integer("connections_original", connections_original, minimum=1)
    V.integer("connections_pruned", connections_pruned, minimum=0)
    if connections_pruned > connections_original:
        raise ValueError("`connections_pruned` must be <= `connections_original`. "
                         f"Received: connections_original={connections_original!r}, "
                         f"connections_pruned={connections_pruned!r}")
    return rate * math.sqrt(connections_pruned / connections_original)


def _check_count(value, n, label):
    """Units to remove out of ``n``: a fraction in [0, 1) (rounded) or an int; one must remain."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"`{label}` must be a fraction in [0, 1) or an int count of units to remove. "
                         f"Received: {label}={value!r}")
    if isinstance(value, numbers.Integral):
        if not 0 <= value < n:
            raise ValueError(f"`{label}` must remove between 0 and {n - 1} of the {n} units (at least one "
                             f"must remain). Received: {label}={value!r}")
        return int(value)
    if not 0.0 <= value < 1.0 or math.isnan(value):
        raise ValueError(f"`{label}` must be a fraction in [0, 1) or an int count of units to remove. "
                         f"Received: {label}={value!r}")
    return min(int(round(float(value) * n)), n - 1)


def _check_int(name, value, minimum):
    return V.integer(name, value, minimum=minimum)


def _check_positive(name, value):
    return V.number(name, value, minimum=0.0, open_min=True)


def _check_images(x, name="x"):
    """A non-empty float batch (any value range: the data scores do not clip)."""
    arr = V.finite_array(name, x)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"`{name}` must hold float inputs (scale uint8 images to [0, 1] first). "
                        f"Received: {name}.dtype={arr.dtype}")
    if arr.ndim < 2 or len(arr) == 0:
        raise ValueError(f"`{name}` must be a non-empty batch of inputs. Received: {name}.shape={arr.shape}")
    return arr.astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------
# The channel graph


def _kind(layer):
    """How a layer treats the channel (last) axis of its input."""
    if isinstance(layer, keras.Model):
        return "opaque"
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return "opaque"
    n_weights = len(layer.weights)
    if isinstance(layer, ScaledWSConv2D):
        return "producer" if layer.groups == 1 and n_weights == 2 + layer.use_bias else "opaque"
    if isinstance(layer, _L.DepthwiseConv2D):
        return "depthwise" if n_weights == 1 + layer.use_bias else "opaque"
    if isinstance(layer, (_L.Conv1D, _L.Conv2D)) and not isinstance(layer, _TRANSPOSED):
        return "producer" if layer.groups == 1 and n_weights == 1 + layer.use_bias else "opaque"
    if isinstance(layer, _L.Dense):
        return "producer" if n_weights == 1 + layer.use_bias else "opaque"
    if isinstance(layer, _L.BatchNormalization):
        axes = list(layer.axis) if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        rank = len(layer.input_shape)
        return "channel" if len(axes) == 1 and axes[0] % rank == rank - 1 else "opaque"
    if isinstance(layer, _L.Activation) and getattr(layer.activation, "__name__", "") in (
            "softmax", "log_softmax"):
        return "opaque"
    if isinstance(layer, _ACTIVATIONS + _PASS):
        return "channel"
    if isinstance(layer, ChannelActivationSuppressing):
        return "cas"
    if isinstance(layer, _MERGES):
        return "merge"
    if isinstance(layer, _L.Concatenate):
        return "concat" if layer.axis in (-1, len(layer.output_shape) - 1) else "opaque"
    if isinstance(layer, _L.Flatten):
        return "flatten"
    return "opaque"


def _refusal(layer):
    why = _REFUSALS.get(type(layer).__name__, "structured pruning does not know how it uses its input "
                        "channels (supported: Dense, Conv1D/2D, DepthwiseConv2D, BatchNormalization, "
                        "activations, pooling, dropout/noise, Flatten, Concatenate, Add-type merges, CAS)")
    return (f"Cannot remove channels flowing into layer {layer.name!r} ({type(layer).__name__}): {why}. "
            "Do not prune the layer(s) feeding it (amount 0 for them).")


class _UnionFind:
    def __init__(self):
        self.parent = {}

    def find(self, a):
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


@dataclasses.dataclass
class _Group:
    members: list  # producer names, in model order
    units: int
    fixed: str | None  # why it cannot be pruned (None: prunable)
    merges: list  # merge layers tying the members


class _Graph:
    """Inbound / consumer lists, kinds, producer groups and activation measurement points."""

    def __init__(self, model):
        check_tf_keras_model(model)
        self.sequential = isinstance(model, keras.Sequential)
        if not self.sequential and not getattr(model, "_is_graph_network", False):
            raise ValueError("`model` is a subclassed keras.Model; structured pruning rebuilds the model "
                             "from its config and needs a Sequential or functional model. Received: "
                             f"model={type(model).__name__}")
        if not model.built or not model.inputs:
            raise ValueError("`model` must be built with a known input shape (e.g. start it with "
                             f"keras.Input). Received: model {model.name!r} without inputs")
        self.model = model
        config = model.get_config()
        self.layers, self.inbound, self.order = {}, {}, []
        if self.sequential:
            prev = "__input__"
            self.order.append(prev)
            self.inbound[prev] = []
            for layer in model.layers:
                self.layers[layer.name] = layer
                self.inbound[layer.name] = [prev]
                self.order.append(layer.name)
                prev = layer.name
            self.outputs = [prev]
        else:
            for entry in config["layers"]:
                name = entry["name"]
                nodes = entry.get("inbound_nodes") or []
                if len(nodes) > 1:
                    raise ValueError(f"Layer {name!r} is shared (called {len(nodes)} times); structured "
                                     "pruning needs each layer called once.")
                srcs = []
                for item in (nodes[0] if nodes else []):
                    if item[2] != 0:
                        raise ValueError(f"Layer {name!r} takes output {item[2]} of the multi-output layer "
                                         f"{item[0]!r}; structured pruning supports single-output layers.")
                    srcs.append(item[0])
                self.order.append(name)
                self.inbound[name] = srcs
                if entry["class_name"] != "InputLayer":
                    self.layers[name] = model.get_layer(name)
            self.outputs = [o[0] for o in config["output_layers"]]
        self.consumers = {n: [] for n in self.order}
        for n in self.order:
            for s in self.inbound[n]:
                self.consumers[s].append(n)
        self.kind = {n: ("input" if n not in self.layers else _kind(self.layers[n])) for n in self.order}
        self.producers = [n for n in self.order if self.kind[n] == "producer"]
        self._build_groups()

    def dim(self, name):
        if name not in self.layers:
            shape = self.model.inputs[0].shape if self.sequential else self.model.get_layer(name).output_shape
            shape = shape[0] if isinstance(shape, list) else shape
            return int(shape[-1])
        return int(self.layers[name].output_shape[-1])

    def _build_groups(self):
        uf = _UnionFind()
        fixed = {}
        merges = {}
        segs = {}  # layer -> list of (source id, channels) along its output's last axis
        for n in self.order:
            kind = self.kind[n]
            ins = [segs[s] for s in self.inbound[n]]
            if kind == "producer":
                segs[n] = [(n, self.dim(n))]
            elif kind in ("channel", "cas"):
                segs[n] = ins[0]
            elif kind == "depthwise":
                layer = self.layers[n]
                segs[n] = ins[0] if layer.depth_multiplier == 1 else [(f"~{n}", self.dim(n))]
                if layer.depth_multiplier != 1:
                    fixed[f"~{n}"] = f"it is the output of {n!r}, a DepthwiseConv2D with depth_multiplier > 1"
            elif kind == "concat":
                segs[n] = [s for part in ins for s in part]
            elif kind == "merge" and all([c for _, c in p] == [c for _, c in ins[0]] for p in ins):
                for part in ins[1:]:
                    for (a, _), (b, _) in zip(ins[0], part):
                        uf.union(a, b)
                        merges.setdefault(a, []).append(n)
                segs[n] = ins[0]
            else:
                src = f"~{n}"
                segs[n] = [(src, self.dim(n))]
                if kind == "input":
                    fixed[src] = "it is the model input"
                elif kind == "merge":
                    for part in ins:
                        for s, _ in part:
                            uf.union(src, s)
                    fixed[src] = f"{n!r} merges tensors with different channel layouts"
                else:
                    fixed[src] = (f"it is the output of {n!r} ({type(self.layers[n]).__name__}), which "
                                  "cannot be pruned")
        for out in self.outputs:
            for s, _ in segs[out]:
                fixed.setdefault(s, f"it feeds the model output {out!r} (its units are the model's outputs, "
                                    "e.g. the class logits)")
        groups = {}
        for s in list(uf.parent) + self.producers:
            root = uf.find(s)
            groups.setdefault(root, set()).add(s)
        self.group_of, self.groups = {}, {}
        for members in groups.values():
            prods = [p for p in self.producers if p in members]
            if not prods:
                continue
            reasons = [fixed[m] for m in members if m in fixed]
            tie = sorted({m for s in members for m in merges.get(s, [])})
            gid = prods[0]
            self.groups[gid] = _Group(prods, self.dim(prods[0]), reasons[0] if reasons else None, tie)
            for p in prods:
                self.group_of[p] = gid

    def measure_point(self, producer):
        """The end of the producer's BN/activation chain (through Add-type merges): its activation."""
        cur = producer
        act = self.layers[producer].activation
        best = producer if getattr(act, "__name__", "linear") != "linear" else None
        while cur not in self.outputs and len(self.consumers[cur]) == 1:
            nxt = self.consumers[cur][0]
            layer = self.layers[nxt]
            if self.kind[nxt] == "channel" and isinstance(layer, (_L.BatchNormalization,) + _ACTIVATIONS):
                best = nxt if isinstance(layer, _ACTIVATIONS) else best
            elif self.kind[nxt] != "merge" or not isinstance(layer, _L.Add):
                break
            cur = nxt
        return best or cur

    def propagate(self, keep):
        """Kept input/output channel indices of every layer, given ``keep[group] = indices``."""
        out, ins = {}, {}
        for n in self.order:
            kind = self.kind[n]
            in_keeps = [out[s] for s in self.inbound[n]]
            ins[n] = in_keeps
            k = in_keeps[0] if in_keeps else None
            if kind == "input":
                out[n] = None
                continue
            layer = self.layers[n]
            if kind == "producer":
                if k is not None and isinstance(layer, ScaledWSConv2D):
                    raise ValueError(_refusal(layer))
                out[n] = keep.get(self.group_of[n])
            elif kind in ("channel", "cas"):
                out[n] = k
            elif kind == "depthwise":
                m = layer.depth_multiplier
                out[n] = None if k is None else (k[:, None] * m + np.arange(m)[None, :]).ravel()
            elif kind == "merge":
                if all(v is None for v in in_keeps):
                    out[n] = None
                    continue
                dims = [self.dim(s) for s in self.inbound[n]]
                full = [np.arange(d) if v is None else v for v, d in zip(in_keeps, dims)]
                if any(not np.array_equal(full[0], f) for f in full[1:]):
                    raise ValueError(f"Layer {n!r} ({type(layer).__name__}) combines inputs "
                                     f"{self.inbound[n]} element-wise, so they must keep the same channels, "
                                     "but pruning removed different ones. Prune the producers of all its "
                                     "inputs together (name one of them) or none of them.")
                out[n] = full[0]
            elif kind == "concat":
                if all(v is None for v in in_keeps):
                    out[n] = None
                    continue
                parts, offset = [], 0
                for v, s in zip(in_keeps, self.inbound[n]):
                    d = self.dim(s)
                    parts.append((np.arange(d) if v is None else v) + offset)
                    offset += d
                out[n] = np.concatenate(parts)
            elif kind == "flatten":
                if k is None:
                    out[n] = None
                    continue
                shape = layer.input_shape
                positions = int(np.prod(shape[1:-1]))
                out[n] = (np.arange(positions)[:, None] * int(shape[-1]) + k[None, :]).ravel()
            else:
                if any(v is not None for v in in_keeps):
                    raise ValueError(_refusal(layer))
                out[n] = None
        return ins, out


# ---------------------------------------------------------------------------------------------
# Scores


def _kernel(layer):
    return layer.standardized_kernel() if isinstance(layer, ScaledWSConv2D) else layer.kernel


def _activation_stats(model, points, x, *, y=None, eps=None, steps=10, batch_size=256):
    """Per measurement point: (fraction of zeros, mean |a|) per channel over examples and positions."""
    probe = keras.Model(model.inputs, [model.get_layer(p).output for p in points])
    forward = tf.function(lambda t: probe(t, training=False))
    zeros = {p: 0.0 for p in points}
    mags = {p: 0.0 for p in points}
    count = {p: 0 for p in points}
    for start in range(0, len(x), batch_size):
        xb = tf.constant(x[start:start + batch_size])
        if eps is not None:
            yb = None if y is None else tf.constant(np.asarray(y[start:start + batch_size]).astype(np.int32))
            xb = attacks.pgd(model, xb, yb, eps=eps, step_size=attacks.default_step_size(eps, steps),
                             steps=steps)
        outs = forward(xb)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for p, a in zip(points, outs):
            a = tf.reshape(tf.cast(a, tf.float32), [-1, a.shape[-1]])
            zeros[p] = zeros[p] + tf.reduce_sum(tf.cast(tf.equal(a, 0.0), tf.float64), 0).numpy()
            mags[p] = mags[p] + tf.reduce_sum(tf.abs(tf.cast(a, tf.float64)), 0).numpy()
            count[p] += int(a.shape[0])
    return {p: (zeros[p] / count[p], mags[p] / count[p]) for p in points}


def apoz(model, x, *, batch_size: int = 256) -> dict:
    """Average percentage of zeros of every prunable unit's activation (Hu et al. 2016).

    ``APoZ_j = sum_k sum_m [a_j(k, m) = 0] / (N M)`` over the ``N`` examples of ``x`` and the
    ``M`` spatial positions, with ``a_j`` the unit's activation: the end of the producer's chain of
    BatchNorm / activation layers (its ReLU). Members of an Add group share one value (the mean over
    their measurement points).

    Args:
      model: a Sequential or functional tf_keras model.
      x: float inputs.
      batch_size: examples per forward pass.

    Returns:
      ``{producer layer name: APoZ array [units]}`` for every Dense / Conv layer, the logits included.

    Example:
      >>> scores = apoz(model, x_train[:2000])  # doctest: +SKIP
      >>> scores["fc1"].argsort()[::-1][:10]  # the 10 most often silent neurons  # doctest: +SKIP
    """
    g = _Graph(model)
    x = _check_images(x)
    _check_int("batch_size", batch_size, 1)
    stats = _group_stats(g, x, batch_size=batch_size)
    return {p: stats[g.group_of[p]][0] for p in g.producers}


def _group_stats(g, x, *, y=None, eps=None, steps=10, batch_size=256):
    points = {gid: sorted({g.measure_point(m) for m in grp.members}) for gid, grp in g.groups.items()}
    flat = sorted({p for v in points.values() for p in v})
    stats = _activation_stats(g.model, flat, x, y=y, eps=eps, steps=steps, batch_size=batch_size)
    return {gid: (np.mean([stats[p][0] for p in ps], 0), np.mean([stats[p][1] for p in ps], 0))
            for gid, ps in points.items()}


def _importance(g, score, x=None, y=None, *, eps=None, steps=10, batch_size=256):
    V.choice("score", score, SCORES)
    if score in ("l1", "l2"):
        if eps is not None:
            raise ValueError("`eps` (a robustness-aware score) needs a data score, 'apoz' or 'activation'. "
                             f"Received: score={score!r}, eps={eps!r}")
        out = {}
        for gid, grp in g.groups.items():
            per = []
            for m in grp.members:
                w = np.abs(_kernel(g.layers[m]).numpy()).reshape(-1, grp.units)
                per.append(w.sum(0) if score == "l1" else np.sqrt((w ** 2).sum(0)))
            # Group members may differ in scale (main path vs shortcut): average scale-free norms.
            out[gid] = per[0] if len(per) == 1 else np.mean([s / max(float(s.mean()), 1e-12) for s in per], 0)
        return out
    if x is None:
        raise ValueError(f"score={score!r} is measured on data: pass `x` (a few thousand training images). "
                         "Received: x=None")
    x = _check_images(x)
    if eps is not None:
        eps = _check_positive("eps", eps)
        x = V.images(x, model=g.model)  # PGD works in [0, 1]
        if y is not None:
            y = V.labels(y, n=len(x))
    stats = _group_stats(g, x, y=y, eps=eps, steps=_check_int("steps", steps, 1), batch_size=batch_size)
    return {gid: (1.0 - s[0]) if score == "apoz" else s[1] for gid, s in stats.items()}


def unit_importance(model, score: str = "l1", x=None, y=None, *, eps: float | None = None, steps: int = 10,
                    batch_size: int = 256) -> dict:
    """Importance of every prunable unit (higher = more important, kept first).

    Args:
      model: a Sequential or functional tf_keras model.
      score: ``"l1"`` / ``"l2"`` (kernel norm per unit), ``"apoz"`` (``1 - APoZ`` on ``x``) or
        ``"activation"`` (mean ``|a|`` on ``x``); see the module docstring for the formulas.
      x: inputs for the data scores.
      y: labels of ``x`` for the adversarial examples (default: the model's predictions).
      eps: if given, the data scores are measured on PGD examples (L-inf radius ``eps``) of ``x``:
        a robustness-aware score.
      steps: PGD steps (step size ``2.5 eps / steps``).
      batch_size: examples per forward pass / attack batch.

    Returns:
      ``{producer layer name: importance [units]}`` for the prunable producers (not the logits).
      Members of an Add group share one score: the mean of their scale-normalised kernel norms, or
      the activation statistics averaged over their measurement points.
    """
    g = _Graph(model)
    _check_int("batch_size", batch_size, 1)
    scores = _importance(g, score, x, y, eps=eps, steps=steps, batch_size=batch_size)
    return {p: scores[gid] for gid, grp in g.groups.items() if grp.fixed is None for p in grp.members}


# ---------------------------------------------------------------------------------------------
# Pruning


def _resolve_amounts(g, amount) -> dict:
    """``{group id: units to remove}`` from one amount for every prunable group or a per-layer dict."""
    if isinstance(amount, dict):
        out, given = {}, {}
        for name, value in amount.items():
            if name not in g.layers:
                prunable = [p for p in g.producers if g.groups[g.group_of[p]].fixed is None]
                raise ValueError(f"`amount` names {name!r}, which is not a layer of the model. "
                                 f"Prunable layers: {prunable}")
            if name not in g.group_of:
                layer = g.layers[name]
                raise ValueError(f"`amount` names {name!r} ({type(layer).__name__}), which has no units to "
                                 "remove: only Dense and Conv1D/Conv2D layers (with no extra weights) are "
                                 "pruned; their pruning propagates to BatchNorm, DepthwiseConv2D and the "
                                 f"following layers. Received: amount[{name!r}]={value!r}")
            gid = g.group_of[name]
            grp = g.groups[gid]
            n = _check_count(value, grp.units, f"amount[{name!r}]")
            if grp.fixed is not None:
                if n == 0:
                    continue
                via = f" (tied through {grp.merges})" if grp.merges else ""
                raise ValueError(f"Cannot prune {name!r}{via}: {grp.fixed}. "
                                 f"Received: amount[{name!r}]={value!r}")
            if gid in given and given[gid][1] != n:
                first = given[gid][0]
                raise ValueError(f"{first!r} and {name!r} are combined in {grp.merges} and must be pruned "
                                 f"together by the same amount. Received: amount[{first!r}]="
                                 f"{amount[first]!r}, amount[{name!r}]={value!r}")
            given[gid] = (name, n)
            out[gid] = n
        return out
    return {gid: _check_count(amount, grp.units, "amount")
            for gid, grp in g.groups.items() if grp.fixed is None}


def _model_macs(model) -> int:
    """Multiply-accumulates per example of the Dense / Conv / DepthwiseConv layers."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, _L.Dense):
            total += int(np.prod(layer.input_shape[1:-1], dtype=np.int64)) * layer.kernel.shape.num_elements()
        elif isinstance(layer, (_L.Conv1D, _L.Conv2D, _L.Conv3D, _L.DepthwiseConv2D)) and not isinstance(
                layer, _TRANSPOSED):
            positions = int(np.prod(layer.output_shape[1:-1], dtype=np.int64))
            total += positions * layer.weights[0].shape.num_elements()
        elif isinstance(layer, keras.Model):
            total += _model_macs(layer)
    return int(total)


def _upstream_kernel_layer(g, name):
    """The Dense / Conv layer whose outputs a Dropout layer acts on (through element-wise layers)."""
    cur = g.inbound[name][0] if g.inbound[name] else None
    while cur is not None and g.kind[cur] in ("channel", "flatten", "cas") and len(g.inbound[cur]) == 1:
        cur = g.inbound[cur][0]
    return cur if cur is not None and g.kind[cur] in ("producer", "depthwise") else None


def _connections(layer, in_keep, out_keep):
    shape = list(layer.weights[0].shape)
    if in_keep is not None:
        shape[-2] = len(in_keep)
    if out_keep is not None and not isinstance(layer, _L.DepthwiseConv2D):
        shape[-1] = len(out_keep)
    return int(np.prod(shape))


def _new_weights(layer, kind, in_keep, out_keep):
    w = layer.get_weights()
    if kind in ("producer", "depthwise"):
        kernel = w[0] if in_keep is None else np.take(w[0], in_keep, axis=-2)
        if kind == "producer" and out_keep is not None:
            kernel = kernel[..., out_keep]
        return [kernel] + [v if out_keep is None else v[out_keep] for v in w[1:]]
    if in_keep is None:
        return w
    if kind == "cas":
        return [w[0][in_keep]]
    # per-channel weights (BatchNorm statistics, PReLU alphas): slice the channel axis
    return [v[..., in_keep] if v.ndim and v.shape[-1] > 1 else v for v in w]


@dataclasses.dataclass
class UnitPruningResult:
    """A narrower model and what was removed.

    Attributes:
      model: the rebuilt tf_keras model (uncompiled) with the surviving weights.
      kept: ``{producer: kept unit indices}`` (original numbering) for the pruned producers.
      units: ``{producer: (before, after)}`` for every Dense / Conv producer.
      params: ``(before, after)`` parameter counts.
      macs: ``(before, after)`` multiply-accumulates per example (Dense / Conv / DepthwiseConv).
      dropout: ``{dropout layer: (rate before, rate after)}`` (Han et al.'s adjustment).
      score: the score used (``"importance"`` when given explicitly).
    """

    model: object
    kept: dict
    units: dict
    params: tuple
    macs: tuple
    dropout: dict
    score: str

    @property
    def param_ratio(self) -> float:
        """Parameters before / after."""
        return self.params[0] / self.params[1]

    @property
    def mac_ratio(self) -> float:
        """MACs before / after."""
        return self.macs[0] / self.macs[1] if self.macs[1] else float("inf")

    def to_dict(self) -> dict:
        return {"kept": {k: [int(i) for i in v] for k, v in self.kept.items()},
                "units": {k: list(v) for k, v in self.units.items()}, "params": list(self.params),
                "macs": list(self.macs), "dropout": {k: list(v) for k, v in self.dropout.items()},
                "score": self.score, "param_ratio": self.param_ratio, "mac_ratio": self.mac_ratio}

    def to_markdown(self) -> str:
        lines = [markdown_table(["layer", "units before", "after", "removed"],
                                [[name, a, b, f"{1 - b / a:.1%}"] for name, (a, b) in self.units.items()])]
        lines += ["", f"Parameters {self.params[0]:,} -> {self.params[1]:,} ({self.param_ratio:.2f}x fewer); "
                      f"MACs per example {self.macs[0]:,} -> {self.macs[1]:,} ({self.mac_ratio:.2f}x fewer)."]
        for name, (a, b) in self.dropout.items():
            lines.append(f"Dropout {name}: rate {a:.3f} -> {b:.3f} (D_r = D_o sqrt(C_ir / C_io)).")
        return "\n".join(lines) + "\n"


def prune_units(model, amount, *, score: str = "l1", x=None, y=None, eps: float | None = None,
                steps: int = 10, importance: dict | None = None, adjust_dropout: bool = True,
                batch_size: int = 256) -> UnitPruningResult:
    """Remove the least important neurons / channels and rebuild a narrower model.

    For each prunable group (a Dense / Conv producer, or the producers tied by an Add-type merge),
    the ``r`` units with the lowest importance are removed (ties: lower index first), ``r`` given
    by ``amount``; the model is rebuilt from its config with fewer ``units`` / ``filters`` and
    every weight indexed by a removed channel sliced away (see the module docstring). Removing a
    unit whose activation is zero on every input leaves the model's outputs unchanged.

    Args:
      model: a Sequential or functional tf_keras model (not subclassed, layers called once).
      amount: units to remove: a fraction in [0, 1) (rounded; at least one unit remains) or an int
        count, for every prunable group; or ``{layer name: fraction or count}`` (naming one member
        of an Add group prunes the whole group; members named twice must agree). The producer of
        the model's outputs (the logits) and groups fed by the model input are never pruned (an
        error when named).
      score: ``"l1"``, ``"l2"``, ``"apoz"`` or ``"activation"`` (see :func:`unit_importance`).
      x, y, eps, steps: data (and the PGD radius for a robustness-aware score) of the data scores.
      importance: ``{producer: importance [units]}`` to use instead of ``score`` (higher = kept);
        for a group, the members given are averaged.
      adjust_dropout: set every Dropout layer's rate to ``D_o sqrt(C_ir / C_io)`` (for retraining).
      batch_size: examples per forward pass of the data scores.

    Returns:
      :class:`UnitPruningResult` (``.model`` is the narrow model, uncompiled).

    Raises:
      ValueError: bad ``amount`` / ``score``, unknown or unprunable layers, layers that cannot
        take a pruned input (named), subclassed models.
      TypeError: a Keras 3 model, non-float ``x``.

    Example:
      >>> res = prune_units(model, {"conv2": 0.5, "fc1": 0.75}, score="apoz",
      ...                   x=x_train[:2000])  # doctest: +SKIP
      >>> print(res.to_markdown()); small = res.model  # then compile and fine-tune  # doctest: +SKIP
    """
    g = _Graph(model)
    V.boolean("adjust_dropout", adjust_dropout)
    _check_int("batch_size", batch_size, 1)
    counts = _resolve_amounts(g, amount)
    counts = {gid: n for gid, n in counts.items() if n > 0}
    # Fail on unsupported layers before spending time on data scores.
    g.propagate({gid: np.arange(g.groups[gid].units - n) for gid, n in counts.items()})
    if importance is not None:
        if not isinstance(importance, dict):
            raise TypeError("`importance` must be a dict of arrays by layer name. "
                            f"Received: {type(importance).__name__}")
        scores = {}
        for gid in counts:
            grp = g.groups[gid]
            given = [np.asarray(importance[m], dtype=np.float64) for m in grp.members if m in importance]
            if not given:
                raise ValueError(f"`importance` has no entry for {grp.members}, which `amount` prunes.")
            for m, v in zip([m for m in grp.members if m in importance], given):
                if v.shape != (grp.units,):
                    raise ValueError(f"`importance[{m!r}]` must have shape ({grp.units},). "
                                     f"Received: {v.shape}")
            scores[gid] = np.mean(given, 0)
        score = "importance"
    elif counts:
        scores = _importance(g, score, x, y, eps=eps, steps=steps, batch_size=batch_size)
    else:
        scores = {}
        V.choice("score", score, SCORES)
    keep = {}
    for gid, n in counts.items():
        order = np.argsort(scores[gid], kind="stable")
        keep[gid] = np.sort(order[n:])
    ins, outs = g.propagate(keep)
    dropout = {}
    config = copy.deepcopy(model.get_config())
    for entry in config["layers"]:
        name = entry.get("name", entry["config"].get("name"))
        entry.pop("build_config", None)
        if name not in g.layers:
            continue
        layer = g.layers[name]
        if g.kind[name] == "producer" and outs[name] is not None:
            entry["config"]["units" if isinstance(layer, _L.Dense) else "filters"] = int(len(outs[name]))
        if adjust_dropout and isinstance(layer, _L.Dropout) and layer.rate > 0:
            src = _upstream_kernel_layer(g, name)
            if src is not None:
                before = g.layers[src].weights[0].shape.num_elements()
                after = _connections(g.layers[src], ins[src][0], outs[src])
                rate = adjust_dropout_rate(float(layer.rate), int(before), after)
                if after != before:
                    entry["config"]["rate"] = rate
                    dropout[name] = (float(layer.rate), rate)
    cls = keras.Sequential if g.sequential else keras.Model
    new_model = cls.from_config(config)
    for layer in new_model.layers:
        if layer.weights and layer.name in g.layers:
            old = g.layers[layer.name]
            in_keep = ins[layer.name][0] if ins[layer.name] else None
            layer.set_weights(_new_weights(old, g.kind[layer.name], in_keep, outs[layer.name]))
    kept = {p: outs[p] for p in g.producers if outs[p] is not None}
    units = {p: (g.groups[g.group_of[p]].units, int(new_model.get_layer(p).output_shape[-1]))
             for p in g.producers}
    params = (int(model.count_params()), int(new_model.count_params()))
    return UnitPruningResult(new_model, kept, units, params, (_model_macs(model), _model_macs(new_model)),
                             dropout, score)


# ---------------------------------------------------------------------------------------------
# Retraining: iterative prune -> fine-tune, and the Scratch-E / Scratch-B baselines


def _check_adversarial(adversarial):
    if adversarial is not None and not isinstance(adversarial, dict):
        raise TypeError("`adversarial` must be None or a dict of AdversarialTrainer arguments, e.g. "
                        f"{{'method': 'fgsm_rs', 'eps': 0.1}}. Received: adversarial={adversarial!r}")


def _fit(model, x, y, *, epochs, lr, batch_size, seed, adversarial):
    """Train ``model`` in place (cross-entropy on logits, Adam); adversarially when asked."""
    if epochs == 0:
        return 0.0
    ds = as_tf_dataset(x, y, batch_size=batch_size, shuffle=True, seed=seed)
    opt = keras.optimizers.Adam(lr)
    if adversarial is not None:
        trainer = AdversarialTrainer(model, **adversarial)
        trainer.compile(optimizer=opt, metrics=["accuracy"])
        target = trainer
    else:
        model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        target = model
    t0 = time.perf_counter()
    target.fit(ds, epochs=epochs, verbose=0)
    return time.perf_counter() - t0


@dataclasses.dataclass
class IterativePruningResult:
    """The final narrow model and one row per round (round 0: the model given)."""

    model: object
    rows: list
    config: dict

    def to_dict(self) -> dict:
        return {"rows": self.rows, "config": self.config}

    def to_markdown(self) -> str:
        val = any("val_accuracy" in r for r in self.rows)
        headers = ["round", "units", "params", "MACs/example", "fine-tune epochs", "s"]
        headers += ["val. accuracy"] if val else []
        rows = []
        for r in self.rows:
            row = [r["round"], ", ".join(f"{k} {v}" for k, v in r["units"].items()), f"{r['params']:,}",
                   f"{r['macs']:,}", r["epochs"], f"{r['seconds']:.0f}"]
            if val:
                row.append(f"{r['val_accuracy']:.4f}" if "val_accuracy" in r else "-")
            rows.append(row)
        return markdown_table(headers, rows) + "\n"


def prune_units_iteratively(model, amount, x, y, *, rounds: int = 3, score: str = "apoz", epochs: int = 1,
                            final_epochs: int = 0, score_examples: int = 2000, eps: float | None = None,
                            adversarial: dict | None = None, lr: float = 5e-4, batch_size: int = 128,
                            x_val=None, y_val=None, seed: int = 0) -> IterativePruningResult:
    """Prune in ``rounds`` steps, fine-tuning after each (Han et al. 2015; Hu et al. 2016).

    Each group's final width ``k`` (from ``amount``, as in :func:`prune_units`) is reached
    geometrically: after round ``r`` of ``R`` it keeps ``round(n (k / n)^(r / R))`` of its ``n``
    units. After each pruning step the importance is re-measured on the current (fine-tuned)
    model, Dropout rates follow ``D_r = D_o sqrt(C_ir / C_io)`` (relative to the original model's
    rates), and the model is fine-tuned for ``epochs`` epochs -- adversarially with
    :class:`tfrobust.trainers.AdversarialTrainer` when ``adversarial`` is given.

    Args:
      model: a trained Sequential / functional tf_keras logits model (not modified).
      amount: as in :func:`prune_units` (the final amount).
      x, y: training data for fine-tuning (and the first ``score_examples`` for the data scores).
      rounds: pruning steps (>= 1).
      score: ``"apoz"``, ``"activation"``, ``"l1"`` or ``"l2"``.
      epochs: fine-tuning epochs after each round; ``final_epochs`` more after the last.
      score_examples: training examples the data scores are measured on.
      eps: measure the data scores on PGD examples of radius ``eps`` (robustness-aware score).
      adversarial: ``AdversarialTrainer`` arguments for adversarial fine-tuning, e.g.
        ``{"method": "fgsm_rs", "eps": 0.1}`` or ``{"method": "pgd", "eps": 0.1, "steps": 7}``.
      lr, batch_size: Adam learning rate and batch size of the fine-tuning.
      x_val, y_val: optional data whose accuracy is recorded after every round.
      seed: shuffling seed.

    Returns:
      :class:`IterativePruningResult`.

    Example:
      >>> res = prune_units_iteratively(model, {"conv2": 0.5, "fc1": 0.75}, x, y, rounds=2,
      ...                               adversarial={"method": "fgsm_rs", "eps": 0.1})  # doctest: +SKIP
    """
    g = _Graph(model)
    rounds = _check_int("rounds", rounds, 1)
    epochs = _check_int("epochs", epochs, 0)
    final_epochs = _check_int("final_epochs", final_epochs, 0)
    score_examples = _check_int("score_examples", score_examples, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    seed = _check_int("seed", seed, 0)
    lr = _check_positive("lr", lr)
    V.choice("score", score, SCORES)
    _check_adversarial(adversarial)
    x = _check_images(x)
    y = V.labels(y, n=len(x))
    if (x_val is None) != (y_val is None):
        raise ValueError("Pass both `x_val` and `y_val` or neither.")
    final = {gid: g.groups[gid].units - n for gid, n in _resolve_amounts(g, amount).items()}
    g.propagate({gid: np.arange(k) for gid, k in final.items()})  # refuse unsupported layers up front
    rates = {n: float(g.layers[n].rate) for n in g.layers if isinstance(g.layers[n], _L.Dropout)}
    work = keras.models.clone_model(model)
    work.set_weights(model.get_weights())

    def row(r, m, n_epochs, secs):
        out = {"round": r, "units": {p: int(m.get_layer(p).output_shape[-1]) for p in g.producers},
               "params": int(m.count_params()), "macs": _model_macs(m), "epochs": n_epochs, "seconds": secs}
        if x_val is not None:
            out["val_accuracy"] = evaluation.accuracy(m, _check_images(x_val, "x_val"), np.asarray(y_val),
                                                      batch_size=1000)
        return out

    rows = [row(0, work, 0, 0.0)]
    xs, ys = x[:score_examples], y[:score_examples]
    for r in range(1, rounds + 1):
        current = {gid: int(work.get_layer(gid).output_shape[-1]) for gid in final}
        target = {gid: max(k, int(round(g.groups[gid].units * (k / g.groups[gid].units) ** (r / rounds))))
                  for gid, k in final.items()}
        if r == rounds:
            target = final
        step = {gid: current[gid] - target[gid] for gid in final if current[gid] > target[gid]}
        res = prune_units(work, step, score=score, x=xs, y=ys, eps=eps, adjust_dropout=False)
        work = res.model
        _set_dropout(work, model, rates)
        n_epochs = epochs + (final_epochs if r == rounds else 0)
        secs = _fit(work, x, y, epochs=n_epochs, lr=lr, batch_size=batch_size, seed=seed + r,
                    adversarial=adversarial)
        rows.append(row(r, work, n_epochs, secs))
    config = {"amount": amount if not isinstance(amount, dict) else dict(amount), "rounds": rounds,
              "score": score, "epochs": epochs, "final_epochs": final_epochs,
              "score_examples": score_examples,
              "eps": eps, "adversarial": adversarial, "lr": lr, "batch_size": batch_size, "seed": seed,
              "dropout": {n: float(work.get_layer(n).rate) for n in rates}}
    return IterativePruningResult(work, rows, config)


def _set_dropout(pruned, original, rates):
    """Set the Dropout rates of ``pruned`` to ``D_o sqrt(C_ir / C_io)`` against ``original``."""
    if not rates:
        return
    g = _Graph(original)
    for name, rate in rates.items():
        src = _upstream_kernel_layer(g, name)
        if src is None or rate == 0:
            continue
        before = original.get_layer(src).weights[0].shape.num_elements()
        after = pruned.get_layer(src).weights[0].shape.num_elements()
        pruned.get_layer(name).rate = adjust_dropout_rate(rate, int(before), int(after))


@dataclasses.dataclass
class ScratchResult:
    """Scratch-E / Scratch-B: the pruned architecture trained from a fresh random initialisation."""

    rows: list
    config: dict
    models: dict = dataclasses.field(repr=False, default_factory=dict)

    def to_dict(self) -> dict:
        return {"rows": self.rows, "config": self.config}

    def to_markdown(self) -> str:
        return markdown_table(["training", "epochs", "accuracy", "s"],
                              [[r["name"], r["epochs"], f"{r['accuracy']:.4f}", f"{r['seconds']:.0f}"]
                               for r in self.rows]) + "\n"


def scratch_baselines(pruned, original, x, y, x_test, y_test, *, epochs: int, lr: float = 1e-3,
                      batch_size: int = 128, adversarial: dict | None = None, max_budget_ratio: float = 2.0,
                      seed: int = 0) -> ScratchResult:
    """Train the pruned *architecture* from scratch (Liu et al. 2019).

    - Scratch-E: fresh random initialisation, the same ``epochs`` as the original model's training.
    - Scratch-B: the same computation budget, ``ceil(E * min(max_budget_ratio, MACs_o / MACs_p))``
      epochs (Liu et al. double the epochs when the pruned model saves more than 2x FLOPs).

    Args:
      pruned: the narrow model (its weights are not used; a clone is re-initialised).
      original: the unpruned model (for the MAC ratio).
      x, y, x_test, y_test: training and test data.
      epochs: ``E``, the original model's training epochs.
      lr, batch_size: Adam learning rate and batch size.
      adversarial: ``AdversarialTrainer`` arguments to train adversarially (as the original was).
      max_budget_ratio: cap of the Scratch-B epoch multiplier.
      seed: seed of the initialisation and shuffling.

    Returns:
      :class:`ScratchResult` (rows ``scratch_e`` and ``scratch_b`` with test accuracy; ``models``
      holds the trained models).
    """
    check_tf_keras_model(pruned, argument="pruned")
    check_tf_keras_model(original, argument="original")
    epochs = _check_int("epochs", epochs, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    seed = _check_int("seed", seed, 0)
    lr = _check_positive("lr", lr)
    max_budget_ratio = _check_positive("max_budget_ratio", max_budget_ratio)
    _check_adversarial(adversarial)
    x, x_test = _check_images(x), _check_images(x_test, "x_test")
    macs_o, macs_p = _model_macs(original), _model_macs(pruned)
    ratio = macs_o / macs_p if macs_p else 1.0
    b_epochs = math.ceil(epochs * min(max_budget_ratio, max(ratio, 1.0)))
    rows, models = [], {}
    for name, n in (("scratch_e", epochs), ("scratch_b", b_epochs)):
        fresh = _fresh(pruned, seed)
        secs = _fit(fresh, x, np.asarray(y), epochs=n, lr=lr, batch_size=batch_size, seed=seed,
                    adversarial=adversarial)
        acc = evaluation.accuracy(fresh, x_test, np.asarray(y_test), batch_size=1000)
        rows.append({"name": name, "epochs": n, "accuracy": acc, "seconds": secs})
        models[name] = fresh
    config = {"epochs": epochs, "macs_original": macs_o, "macs_pruned": macs_p, "mac_ratio": ratio,
              "max_budget_ratio": max_budget_ratio, "lr": lr, "batch_size": batch_size, "seed": seed,
              "adversarial": adversarial}
    return ScratchResult(rows, config, models)
