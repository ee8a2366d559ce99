"""Low-rank factorisation of Dense and Conv2D layers by truncated SVD.

A Dense kernel ``W`` (``N_in x N_out``) with SVD ``W = U S V^T`` is replaced by two Dense layers,
``W ~= (U_K S_K^{1/2}) (S_K^{1/2} V_K^T)``: ``N_in -> K`` (no bias, linear) then ``K -> N_out``
(the original bias and activation). A Conv2D kernel (``k_h x k_w x C_in x C_out``) is reshaped to
``(k_h k_w C_in) x C_out`` and factorised the same way into a ``k_h x k_w`` conv with ``K``
filters (the original strides/padding/dilation) followed by a 1x1 conv with ``C_out`` filters.

``K`` is the smallest rank whose singular values keep a fraction ``energy`` of the squared
Frobenius norm: ``sum_{i<=K} s_i^2 / sum_i s_i^2 >= energy``. A layer is only replaced when the
factorised form has fewer weights, ``K (N_in + N_out) < N_in N_out``.

References:
  Denton et al., Exploiting Linear Structure Within Convolutional Networks for Efficient
  Evaluation, NeurIPS 2014, https://arxiv.org/abs/1404.0736
  Zhang et al., Accelerating Very Deep Convolutional Networks for Classification and Detection,
  2015, https://arxiv.org/abs/1505.06798
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfrobust._keras import check_tf_keras_model, keras
from tfrobust.compression._graph import replace_layers
from tfrobust.utils import markdown_table

__all__ = ["FactorizationReport", "choose_rank", "factorize"]


def choose_rank(singular_values, energy: float) -> int:
    """Smallest ``K`` with ``sum_{i<=K} s_i^2 >= energy * sum_i s_i^2`` (at least 1)."""
    s2 = np.asarray(singular_values, dtype=np.float64) ** 2
    if s2.sum() == 0:
        return 1
    cum = np.cumsum(s2) / s2.sum()
    return int(min(np.searchsorted(cum, energy - 1e-12) + 1, len(s2)))


@dataclasses.dataclass
class FactorizationReport:
    """Per-layer ranks and parameter counts."""

    layers: list[dict]
    params_before: int
    params_after: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_markdown(self) -> str:
        lines = [markdown_table(
            ["layer", "shape", "rank K", "energy kept", "weights before", "weights after", "replaced"],
            [[r["layer"], r["shape"], r["rank"], f"{r['energy']:.4f}", r["weights_before"],
              r["weights_after"], r["replaced"]] for r in self.layers])]
        lines.append(f"\nModel parameters: {self.params_before} -> {self.params_after} "
                     f"({self.params_before / max(self.params_after, 1):.2f}x fewer).")
        return "\n".join(lines) + "\n"


def factorize(model, *, energy: float = 0.9, layers=None, min_weights: int = 1024):
    """Replace Dense / Conv2D layers by truncated-SVD pairs (fine-tune the result afterwards).

    Args:
      model: a Sequential or functional tf_keras model.
      energy: fraction of squared singular values to keep, in (0, 1].
      layers: names of layers to factorise (default: every Dense/Conv2D with at least
        ``min_weights`` kernel weights and groups=1).
      min_weights: size threshold for the default layer selection.

    Returns:
      ``(new_model, FactorizationReport)``; with ``energy=1`` the factorised model computes the
      same function up to float rounding.
    """
    check_tf_keras_model(model)
    if not isinstance(energy, (int, float)) or isinstance(energy, bool) or not 0.0 < energy <= 1.0:
        raise ValueError(f"`energy` must be in (0, 1]. Received: energy={energy!r}")
    if layers is not None:
        known = {layer.name for layer in model.layers}
        unknown = set(layers) - known
        if unknown:
            raise ValueError(f"`layers` names unknown layers {sorted(unknown)}. Received: layers={layers!r}")
    rows, factors = [], {}

    def candidate(layer):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            return False
        if isinstance(layer, keras.layers.Conv2D):
            ok = layer.groups == 1 and layer.data_format == "channels_last"
        else:
            ok = isinstance(layer, keras.layers.Dense) and len(layer.kernel.shape) == 2
        if not ok:
            return False
        return layer.name in layers if layers is not None else int(np.prod(layer.kernel.shape)) >= min_weights

    def fn(layer):
        if not candidate(layer):
            return None
        w = layer.kernel.numpy()
        mat = w.reshape(-1, w.shape[-1])
        u, s, vt = np.linalg.svd(mat.astype(np.float64), full_matrices=False)
        k = choose_rank(s, energy)
        n_in, n_out = mat.shape
        kept = float((s[:k] ** 2).sum() / max((s ** 2).sum(), 1e-300))
        replace = k * (n_in + n_out) < n_in * n_out
        rows.append({"layer": layer.name, "shape": list(w.shape), "rank": k, "energy": kept,
                     "weights_before": int(w.size), "weights_after": int(k * (n_in + n_out)) if replace
                     else int(w.size), "replaced": bool(replace)})
        if not replace:
            return None
        root = np.sqrt(s[:k])
        first = (u[:, :k] * root).astype(np.float32)
        second = (root[:, None] * vt[:k]).astype(np.float32)
        cfg = layer.get_config()
        if isinstance(layer, keras.layers.Dense):
            a = keras.layers.Dense(k, use_bias=False, name=f"{layer.name}_lowrank_u")
            b = keras.layers.Dense(n_out, activation=cfg["activation"], use_bias=cfg["use_bias"],
                                   name=f"{layer.name}_lowrank_v")
            factors[layer.name] = (first, second)
        else:
            a = keras.layers.Conv2D(k, cfg["kernel_size"], strides=cfg["strides"], padding=cfg["padding"],
                                    dilation_rate=cfg["dilation_rate"], use_bias=False,
                                    name=f"{layer.name}_lowrank_u")
            b = keras.layers.Conv2D(n_out, 1, activation=cfg["activation"], use_bias=cfg["use_bias"],
                                    name=f"{layer.name}_lowrank_v")
            factors[layer.name] = (first.reshape(*w.shape[:-1], k), second.reshape(1, 1, k, n_out))
        return [a, b]

    new_model, replaced = replace_layers(model, fn)
    for old, (first, second) in factors.items():
        extra = model.get_layer(old).get_weights()[1:]  # the bias, if any
        new_model.get_layer(f"{old}_lowrank_u").set_weights([first])
        new_model.get_layer(f"{old}_lowrank_v").set_weights([second, *extra])
    report = FactorizationReport(rows, int(model.count_params()), int(new_model.count_params()))
    return new_model, report
