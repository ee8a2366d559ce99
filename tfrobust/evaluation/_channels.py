r"""Channel statistics behind CAS and CIFS: which channels fire, how often and how strongly, per class.

Bai et al. (CAS, ICLR 2021) and Yan et al. (CIFS, ICML 2021) motivate their defenses with one
observation: adversarial examples activate a *larger and more uniform* set of channels than natural
images of the same class, with *larger* magnitudes. This module measures that picture on any
Keras model so a user can see what a defense changes.

For a layer with output :math:`f^l \in \mathbb{R}^{H \times W \times K}` (or :math:`\mathbb{R}^K`
for a dense layer), the channel-wise activation is the GAP

.. math::  \hat f^l_k(x) = \frac{1}{HW} \sum_{i,j} f^l_k(x)_{ij}.

Per class :math:`c` (the *true* label, for natural and adversarial images alike):

- **activation count** :math:`n_{ck} = \sum_{x \in X_c} |\{(i, j) : f^l_k(x)_{ij} > \tau\}|`, how many
  times channel :math:`k` fires over the images of class :math:`c` and their :math:`H \times W`
  positions (``threshold`` :math:`\tau`, default 0: a ReLU unit that is on; for a dense layer
  :math:`H = W = 1` and the count is the number of images on which the unit is on). Counting
  positions, not images, keeps the statistic informative for convolutional layers, where almost
  every channel responds *somewhere* in every image;
- **activated channels**: :math:`n_{ck} > 0.01 \max_{k'} n_{ck'}` — a channel counts as activated
  for the class when its count exceeds 1% of the largest count over the layer's channels (the CAS
  paper's rule; ``relative`` sets the 1%);
- **magnitude** :math:`m_{ck} = \operatorname{mean}_{x \in X_c} \hat f^l_k(x)`;
- **uniformity**: the normalised entropy of the class's count distribution,
  :math:`-\sum_k q_k \log q_k / \log K` with :math:`q_k = n_{ck} / \sum_{k'} n_{ck'}` (1 = every
  channel equally often; small = a few channels dominate).

References:
  Bai et al., Improving adversarial robustness via channel-wise activation suppressing, ICLR 2021,
  https://openreview.net/forum?id=zQTezqCCtNx ;
  Yan et al., CIFS, ICML 2021, https://arxiv.org/abs/2102.05311
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import tensorflow as tf

from tfrobust import _validate as V
from tfrobust import utils
from tfrobust._keras import keras
from tfrobust.attacks import pgd

__all__ = ["ChannelStats", "channel_statistics", "compare_channel_statistics", "plot_channel_statistics"]


@dataclasses.dataclass
class ChannelStats:
    """Per-class channel statistics of one layer (see the module docstring for the formulas).

    Attributes:
      layer: the layer's name.
      counts: ``[C, K]`` int, times channel ``k`` fired over the images of class ``c`` and their
        positions.
      images_per_class: ``[C]`` int.
      magnitude: ``[C, K]`` float, mean GAP activation per class and channel.
      activated: ``[C, K]`` bool, the 1%-of-the-largest-count rule.
      threshold, relative: the rule's settings.
    """

    layer: str
    counts: np.ndarray
    images_per_class: np.ndarray
    magnitude: np.ndarray
    activated: np.ndarray
    threshold: float
    relative: float

    @property
    def frequency(self) -> np.ndarray:
        """``counts / images_per_class`` ``[C, K]``: positions that fire per image (for a dense layer,
        the share of images; NaN rows for classes without images)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.counts / self.images_per_class[:, None]

    def uniformity(self) -> np.ndarray:
        """Normalised entropy of each class's count distribution ``[C]`` (NaN for empty classes)."""
        return normalized_entropy(self.counts)

    def summary(self) -> dict:
        """Means over the classes present: activated channels, their share, uniformity, magnitude."""
        present = self.images_per_class > 0
        k = self.counts.shape[1]
        return {
            "layer": self.layer,
            "channels": int(k),
            "activated_channels": float(self.activated[present].sum(axis=1).mean()),
            "activated_share": float(self.activated[present].mean()),
            "uniformity": float(np.nanmean(self.uniformity()[present])),
            "mean_magnitude": float(self.magnitude[present].mean()),
        }


def normalized_entropy(counts: np.ndarray) -> np.ndarray:
    """``-sum_k q_k log q_k / log K`` per row of ``counts`` [C, K] (rows of zeros give NaN)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = counts / total
        terms = np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0)
    ent = -terms.sum(axis=1) / np.log(counts.shape[1]) if counts.shape[1] > 1 else np.zeros(len(counts))
    return np.where(total[:, 0] > 0, ent, np.nan)


def _feature_model(model, layers):
    if not isinstance(model, keras.Model) or not getattr(model, "inputs", None):
        raise TypeError("`model` must be a built functional or Sequential Keras model (its layers' outputs "
                        f"are read). Received: model of type {type(model).__name__}")
    if layers is None:
        layers = [_penultimate(model)]
    elif isinstance(layers, str):
        layers = [layers]
    names = []
    for name in layers:
        try:
            model.get_layer(name)
        except ValueError as e:
            known = ", ".join(layer.name for layer in model.layers)
            raise ValueError(f"`layers` names a layer the model does not have. Received: layers={layers!r}; "
                             f"the model's layers: {known}") from e
        names.append(name)
    return keras.Model(model.inputs, [_output_in(model, model.get_layer(n)) for n in names]), names


def _output_in(model, layer):
    """``layer``'s output tensor in ``model``'s graph (a layer shared with a training model, as
    CAS / CIFS / PCL layers are, has one output per call)."""
    nodes = len(getattr(layer, "inbound_nodes", []) or [None])
    if nodes <= 1:
        return layer.output
    for index in range(nodes):
        out = layer.get_output_at(index)
        try:
            keras.Model(model.inputs, out)
        except ValueError:  # this call belongs to another model's graph
            continue
        return out
    raise ValueError(f"layer {layer.name!r} has no output reachable from the model's inputs.")


def _penultimate(model):
    """The input of the last layer (the features the classifier reads)."""
    last = model.layers[-1]
    inbound = last.input
    for layer in reversed(model.layers[:-1]):
        if layer.output is inbound:
            return layer.name
    raise ValueError("could not find the layer feeding the model's last layer; pass `layers=[...]` by name.")


def _gap_and_fired(features, threshold):
    """Per image: the GAP activation ``[N, K]`` and the number of positions that fire ``[N, K]``."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim < 2:
        raise ValueError(f"a layer output must be [N, K] or [N, ..., K]. Received: shape {f.shape}")
    f = f.reshape(f.shape[0], -1, f.shape[-1])
    return f.mean(axis=1), (f > threshold).sum(axis=1).astype(np.float64)


def channel_statistics(model, x, y, *, layers=None, num_classes: int | None = None, threshold: float = 0.0,
                       relative: float = 0.01, batch_size: int = 256) -> dict[str, ChannelStats]:
    """Per-class activation counts, activated channels (1% rule) and magnitudes of ``layers``.

    Args:
      model: a functional or Sequential Keras model.
      x: float images ``[N, ...]`` of the model's input shape.
      y: true class indices ``[N]`` (one-hot rows accepted); images are grouped by them.
      layers: layer names (default: the layer feeding the last layer).
      num_classes: number of classes (default: the model's output width).
      threshold: ``tau``: a channel fires at a position when its activation exceeds it.
      relative: activated when the count exceeds ``relative`` x the layer's largest count (0.01).
      batch_size: images per forward pass.

    Returns:
      ``{layer_name: ChannelStats}`` in the order of ``layers``.

    Example:
      >>> stats = channel_statistics(model, x_test[:1000], y_test[:1000])  # doctest: +SKIP
      >>> stats["dense"].summary()["activated_channels"]  # doctest: +SKIP
    """
    V.number("threshold", threshold)
    V.fraction("relative", relative, open_max=True)
    V.integer("batch_size", batch_size, minimum=1)
    feats, names = _feature_model(model, layers)
    if num_classes is None:
        num_classes = int(model.output_shape[-1])
    num_classes = V.integer("num_classes", num_classes, minimum=2)
    x = V.finite_array("x", x).astype(np.float32)
    want = tuple(model.input_shape[1:])
    if x.ndim != len(want) + 1 or any(w is not None and w != g for w, g in zip(want, x.shape[1:])):
        raise ValueError(f"`x` must be a batch of the model's input shape [N, {', '.join(map(str, want))}]. "
                         f"Received: x.shape={x.shape}")
    labels = V.labels(y, n=len(x), num_classes=num_classes)
    gaps, fired = [[] for _ in names], [[] for _ in names]
    for start in range(0, len(x), batch_size):
        out = feats(tf.convert_to_tensor(x[start:start + batch_size], tf.float32), training=False)
        out = out if isinstance(out, (list, tuple)) else [out]
        for i, o in enumerate(out):
            g, n = _gap_and_fired(o, threshold)
            gaps[i].append(g)
            fired[i].append(n)
    per_class = np.bincount(labels, minlength=num_classes)
    onehot = np.eye(num_classes, dtype=np.float64)[labels]  # [N, C]
    result = {}
    for name, parts, fires in zip(names, gaps, fired):
        g = np.concatenate(parts)  # [N, K]
        counts = (onehot.T @ np.concatenate(fires)).round().astype(np.int64)  # [C, K]
        with np.errstate(invalid="ignore", divide="ignore"):
            magnitude = np.where(per_class[:, None] > 0, (onehot.T @ g) / per_class[:, None], 0.0)
        largest = counts.max(axis=1, keepdims=True)
        activated = (counts > relative * largest) & (largest > 0)
        result[name] = ChannelStats(layer=name, counts=counts, images_per_class=per_class,
                                    magnitude=magnitude, activated=activated, threshold=float(threshold),
                                    relative=float(relative))
    return result


def compare_channel_statistics(model, x, y, *, eps: float, x_adv=None, steps: int = 20, layers=None,
                               threshold: float = 0.0, relative: float = 0.01, clip_min: float = 0.0,
                               clip_max: float = 1.0, seed: int = 0, batch_size: int = 256) -> dict:
    """Channel statistics on natural images and on their adversarial examples (grouped by true class).

    The adversarial examples are ``x_adv`` when given, else PGD-``steps`` (L-inf ``eps``, default
    step size, random start) on the model's logits.

    Returns:
      ``{"natural": {layer: ChannelStats}, "adversarial": {...}, "summary": {layer: {"natural": ...,
      "adversarial": ...}}, "attack": {...}}``.
    """
    eps = V.number("eps", eps, minimum=0.0)
    x_np = V.images(x, model=model, clip_min=clip_min, clip_max=clip_max)
    if x_adv is None:
        parts = []
        for start in range(0, len(x_np), batch_size):
            xb = x_np[start:start + batch_size]
            yb = np.asarray(y)[start:start + batch_size]
            parts.append(np.asarray(pgd(model, xb, yb, eps=eps, steps=steps, clip_min=clip_min,
                                        clip_max=clip_max, seed=seed + start)))
        x_adv = np.concatenate(parts)
        attack = {"name": "pgd", "eps": eps, "steps": steps, "norm": "linf", "seed": seed}
    else:
        x_adv = V.images(x_adv, model=model, clip_min=clip_min, clip_max=clip_max, name="x_adv")
        attack = {"name": "given", "eps": eps}
    kw = dict(layers=layers, threshold=threshold, relative=relative, batch_size=batch_size)
    natural = channel_statistics(model, x_np, y, **kw)
    adversarial = channel_statistics(model, x_adv, y, **kw)
    summary = {name: {"natural": natural[name].summary(), "adversarial": adversarial[name].summary()}
               for name in natural}
    return {"natural": natural, "adversarial": adversarial, "summary": summary, "attack": attack}


def plot_channel_statistics(comparison: dict, path, *, classes=None, title: str | None = None):
    """Save a PNG: per layer, the activation frequency of each channel (sorted by its natural
    frequency, averaged over ``classes``) natural vs adversarial, and the mean magnitudes.

    Args:
      comparison: the output of :func:`compare_channel_statistics`.
      path: the PNG file to write.
      classes: class indices averaged in the plot (default: every class present).
      title: figure title.

    Returns:
      ``path``.
    """
    # Deferred: matplotlib is heavy and only needed here. A bare Figure (no pyplot): no global
    # backend switch, so a notebook's inline plots keep working.
    from matplotlib.figure import Figure

    natural, adversarial = comparison["natural"], comparison["adversarial"]
    layers = list(natural)
    fig = Figure(figsize=(11, 3.2 * len(layers)))
    axes = fig.subplots(len(layers), 2, squeeze=False)
    for row, name in enumerate(layers):
        nat, adv = natural[name], adversarial[name]
        present = np.flatnonzero(nat.images_per_class > 0) if classes is None else np.asarray(classes)
        f_nat = np.nanmean(nat.frequency[present], axis=0)
        f_adv = np.nanmean(adv.frequency[present], axis=0)
        order = np.argsort(-f_nat)
        ax = axes[row, 0]
        ax.bar(np.arange(len(order)), f_adv[order], color="tab:red", alpha=0.55, label="adversarial")
        ax.bar(np.arange(len(order)), f_nat[order], color="tab:blue", alpha=0.55, label="natural")
        ax.set_xlabel("channel (sorted by natural frequency)")
        ax.set_ylabel("activation frequency")
        s_nat, s_adv = nat.summary(), adv.summary()
        ax.set_title(f"{name}: activated channels {s_nat['activated_channels']:.1f} natural vs "
                     f"{s_adv['activated_channels']:.1f} adversarial", fontsize=9)
        ax.legend(fontsize=8)
        m_nat = nat.magnitude[present].mean(axis=0)
        m_adv = adv.magnitude[present].mean(axis=0)
        ax = axes[row, 1]
        ax.bar(np.arange(len(order)), m_adv[order], color="tab:red", alpha=0.55, label="adversarial")
        ax.bar(np.arange(len(order)), m_nat[order], color="tab:blue", alpha=0.55, label="natural")
        ax.set_xlabel("channel (same order)")
        ax.set_ylabel("mean GAP activation")
        ax.set_title(f"{name}: uniformity {s_nat['uniformity']:.3f} natural vs {s_adv['uniformity']:.3f} "
                     "adversarial", fontsize=9)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    utils.atomic_write_bytes(path, buf.getvalue())
    return path
