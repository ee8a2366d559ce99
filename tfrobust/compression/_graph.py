"""Rewrite a Sequential/functional tf_keras model by replacing layers with chains of new layers.

Works on the model's public config (``get_config`` / ``from_config``): a replaced layer's first
new layer takes its inputs, and every consumer of the old layer (and the model outputs) is
rewired to the last new layer. Weights of untouched layers are copied by name; the caller sets
the new layers' weights.
"""

from __future__ import annotations

import copy

from tfrobust._keras import keras
from tfrobust.compression._pruning import _check_functional

__all__ = ["replace_layers"]


def _rename_refs(nodes, old, new):
    """Replace references to layer ``old`` inside (nested) inbound-node lists."""
    if isinstance(nodes, list):
        if len(nodes) >= 3 and nodes[0] == old and isinstance(nodes[1], int):
            return [new, *nodes[1:]]
        return [_rename_refs(n, old, new) for n in nodes]
    if isinstance(nodes, dict):
        return {k: _rename_refs(v, old, new) for k, v in nodes.items()}
    return nodes


def replace_layers(model, fn, *, custom_objects=None):
    """Return a new model where ``fn(layer)`` -> list of new layers replaces ``layer``.

    Args:
      model: a Sequential or functional tf_keras model (single-node layers).
      fn: called with each layer; returns None to keep it, or a non-empty list of *unbuilt* layer
        instances applied in a chain in its place (single input, single output).
      custom_objects: classes needed by ``from_config``.

    Returns:
      ``(new_model, replaced)`` where ``replaced[old_name] = [new layer names]``; unchanged layers
      carry their weights over, and so does any new layer that reuses an old layer's name with
      weights of the same shapes.
    """
    _check_functional(model)
    config = copy.deepcopy(model.get_config())
    replaced = {}
    sequential = isinstance(model, keras.Sequential)
    new_layers = []
    renames = []
    for entry in config["layers"]:
        name = entry.get("name", entry["config"].get("name"))
        layer = None if entry["class_name"] == "InputLayer" else model.get_layer(name)
        chain = fn(layer) if layer is not None else None
        if not chain:
            new_layers.append(entry)
            continue
        replaced[name] = [c.name for c in chain]
        prev_nodes = entry.get("inbound_nodes")
        for i, new in enumerate(chain):
            item = keras.layers.serialize(new)
            if not sequential:
                item["name"] = new.name
                item["inbound_nodes"] = prev_nodes if i == 0 else [[[chain[i - 1].name, 0, 0, {}]]]
            new_layers.append(item)
        renames.append((name, chain[-1].name))
    for old, new in renames:
        if not sequential:
            for entry in new_layers:
                if entry.get("name") not in replaced.get(old, []):
                    entry["inbound_nodes"] = _rename_refs(entry.get("inbound_nodes", []), old, new)
            config["output_layers"] = _rename_refs(config["output_layers"], old, new)
    config["layers"] = new_layers
    cls = keras.Sequential if sequential else keras.Model
    new_model = cls.from_config(config, custom_objects=custom_objects)
    old_names = {layer.name for layer in model.layers}
    for layer in new_model.layers:
        if not layer.weights or layer.name not in old_names:
            continue
        weights = model.get_layer(layer.name).get_weights()
        if [w.shape for w in weights] == [tuple(v.shape) for v in layer.weights]:
            layer.set_weights(weights)
    return new_model, replaced
