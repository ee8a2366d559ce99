"""Map TFLite tensor / converter location names back to the Keras layers that produced them.

The converter keeps TensorFlow's name scopes: tracing ``model(x)`` inside a ``tf.function`` names
every op ``<model>/<layer>/<op>`` (``small_cnn/conv1/Conv2D``), fused tensors join several such
names with ``;`` and converter error locations append ``@<function>``. Dropping the first
(model scope) and last (op) components gives the layer path.
"""

from __future__ import annotations

from tfrobust._keras import keras


def layer_names(model) -> set[str]:
    """Names of ``model`` and of every Keras layer nested inside it (public ``tf.Module`` API)."""
    if model is None:
        return set()
    names = {model.name}
    for module in model.submodules:
        if isinstance(module, keras.layers.Layer):
            names.add(module.name)
    return names


def layer_from_name(name: str, model=None) -> str | None:
    """The Keras layer path a TFLite tensor or op location name points to, or None.

    Args:
      name: e.g. ``"StatefulPartitionedCall:0;model/my_topk/TopKV2"`` or
        ``"model/my_svd/Svd@__inference_<lambda>_96"``.
      model: optional Keras model; when given, only components that are real layer names are
        kept (``"block/sub_scope/Op"`` -> ``"block"``), and None is returned if none matches.

    Returns:
      ``"layer"`` or ``"outer/inner"`` for nested layers, or None.
    """
    known = layer_names(model)
    for part in name.split(";"):
        part = part.split("@")[0]
        comps = [c for c in part.split("/") if c]
        if len(comps) < 3:
            continue
        inner = comps[1:-1]
        if not known:
            return "/".join(inner)
        matched = [c for c in inner if c in known]
        if matched:
            return "/".join(matched)
    return None
