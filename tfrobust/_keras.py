"""The single place where tfrobust imports Keras: tf_keras (Keras 2 API) and Keras 3 beside it.

tfrobust's code is written once, against the Keras 2 API of the ``tf_keras`` package
(``from tfrobust._keras import keras``): TF-MOT 0.8.x only accepts tf_keras models. Keras 3 users
get the same classes through :func:`for_keras3`, which builds a Keras 3 class from the tf_keras
class's own methods, re-bound so that the name ``keras`` inside them means Keras 3 (no second copy
of any layer body, loss or train step), and whole models move between the flavours with
:func:`rebuild` (config -> the other flavour's ``from_config``, weights copied). See
``docs/keras3.md``.

Importing this module never mutates the environment (no ``TF_USE_LEGACY_KERAS`` here); the
CLI entry point and the test suite set it before TensorFlow is imported, because TF-MOT needs it.
"""

from __future__ import annotations

import sys
import types

import keras as keras3  # Keras 3; TensorFlow >= 2.16 imports it anyway, so this costs nothing
import tf_keras as keras

__all__ = ["keras", "keras3", "is_keras3_object", "check_tf_keras_model", "check_keras_model",
           "flavour", "for_keras3",
           "keras3_custom_objects", "rebuild", "to_tf_keras", "to_keras3", "tf_keras_for_tfmot",
           "file_format", "load_model"]


def is_keras3_object(obj) -> bool:
    """True when ``obj`` is a Keras 3 (``keras`` package) layer or model, not a tf_keras one."""
    for cls in type(obj).__mro__:
        module = cls.__module__ or ""
        if module == "keras" or module.startswith("keras."):
            return True
    return False


def check_tf_keras_model(model, *, argument: str = "model") -> None:
    """Raise a clear ``TypeError`` unless ``model`` is a tf_keras ``Model``.

    Args:
      model: the object to check.
      argument: the argument name used in the error message.

    Raises:
      TypeError: for a Keras 3 model (the most common mistake: ``import keras`` under TF >= 2.16
        gives Keras 3) or any other object.
    """
    if isinstance(model, keras.Model):
        return
    if is_keras3_object(model):
        raise TypeError(
            f"`{argument}` is a Keras 3 model, but this function needs a tf_keras (Keras 2 API) "
            "model (it runs TF-MOT or rewrites tf_keras layers). Rebuild it as tf_keras with the "
            "same weights: `tfrobust.utils.to_tf_keras(model)` (see docs/keras3.md), or build it "
            "with `import tf_keras as keras`. Received: "
            f"{argument}={type(model).__module__}.{type(model).__name__}"
        )
    raise TypeError(
        f"`{argument}` must be a tf_keras Model. Received: {argument} of type "
        f"{type(model).__module__}.{type(model).__name__}"
    )


def check_keras_model(model, *, argument: str = "model") -> None:
    """Raise a clear ``TypeError`` unless ``model`` is a tf_keras or Keras 3 ``Model``."""
    if not isinstance(model, (keras.Model, keras3.Model)):
        raise TypeError(f"`{argument}` must be a Keras model (Keras 3 or tf_keras). Received: "
                        f"{argument} of type {type(model).__module__}.{type(model).__name__}")


def flavour(obj) -> str | None:
    """``"keras3"``, ``"tf_keras"`` or None for an object (or class) of neither Keras."""
    cls = obj if isinstance(obj, type) else type(obj)
    for base in cls.__mro__:
        module = base.__module__ or ""
        if module == "keras" or module.startswith("keras."):
            return "keras3"
        if module == "tf_keras" or module.startswith("tf_keras."):
            return "tf_keras"
    return None


def _keras3_twin_of_keras_class(cls):
    """The Keras 3 class with the same public path as tf_keras class ``cls`` (Layer, Conv2D, ...)."""
    for path in (("Model",), ("layers",), ("constraints",), ("initializers",), ("regularizers",),
                 ("losses",), ("metrics",), ("callbacks",)):
        src, dst = keras, keras3
        for part in path[:-1] if path == ("Model",) else path:
            src, dst = getattr(src, part), getattr(dst, part)
        if path == ("Model",):
            if cls is keras.Model:
                return keras3.Model
            continue
        if getattr(src, cls.__name__, None) is cls and hasattr(dst, cls.__name__):
            return getattr(dst, cls.__name__)
    raise TypeError(f"tf_keras class {cls.__module__}.{cls.__name__} has no Keras 3 counterpart "
                    "under the same public name, so tfrobust cannot derive a Keras 3 class from it")


_OWN_MODULES: set = set()  # modules outside tfrobust whose classes went through for_keras3


def _is_own(obj) -> bool:
    """Code that is re-bound for Keras 3: tfrobust's and that of the classes given to for_keras3."""
    module = getattr(obj, "__module__", "") or ""
    return module.startswith("tfrobust.") or module in _OWN_MODULES


def _translate_value(value, memo):
    """A module global seen by tfrobust code, as Keras 3 code must see it."""
    if value is keras:
        return keras3
    if isinstance(value, type) and _is_own(value) and flavour(value) == "tf_keras":
        return for_keras3(value)
    if isinstance(value, types.FunctionType) and _is_own(value):
        return _rebind(value, memo)
    return value


def _globals_for(module_name: str, memo) -> dict:
    key = ("globals", module_name)
    if key not in memo:
        source = vars(sys.modules[module_name])
        new = dict(source)
        memo[key] = new  # before filling: functions of the module refer to each other
        for name, value in source.items():
            new[name] = _translate_value(value, memo)
    return memo[key]


def _rebind(func, memo, owner=None, new_cls=None):
    """``func`` with its module globals (and ``__class__`` cell) seen through Keras 3."""
    key = ("func", id(func), id(new_cls))
    if key in memo:
        return memo[key]
    if "keras" not in _all_names(func.__code__) and "__class__" not in func.__code__.co_freevars and (
            not _uses_own(func)):
        memo[key] = func
        return func
    closure = func.__closure__
    if closure is not None:
        closure = tuple(types.CellType(new_cls) if name == "__class__" and new_cls is not None
                        else cell for name, cell in zip(func.__code__.co_freevars, closure))
    new = types.FunctionType(func.__code__, _globals_for(func.__module__, memo), func.__name__,
                             func.__defaults__, closure)
    new.__kwdefaults__ = func.__kwdefaults__
    new.__dict__.update(func.__dict__)
    new.__doc__, new.__qualname__ = func.__doc__, func.__qualname__
    new.__module__ = func.__module__
    memo[key] = new
    return new


def _all_names(code) -> set:
    """Global names used by ``code`` and the functions / lambdas defined inside it."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _all_names(const)
    return names


def _uses_own(func) -> bool:
    glb = func.__globals__
    for name in _all_names(func.__code__):
        value = glb.get(name)
        if (isinstance(value, type) and _is_own(value) and flavour(value) == "tf_keras") or (
                isinstance(value, types.FunctionType) and _is_own(value)):
            return True
    return False


_MEMO: dict = {}
_KERAS3_CLASSES: dict = {}


def for_keras3(cls):
    """The Keras 3 twin of a tf_keras class written for tfrobust (layer, constraint, loss, trainer).

    The twin has the same name, arguments and docstring, and its methods are the tf_keras class's
    own functions re-bound so that ``keras`` (and every tfrobust class or helper they name) means
    the Keras 3 one; base classes map by public name (``tf_keras.layers.Conv2D`` ->
    ``keras.layers.Conv2D``). Registered classes are registered with Keras 3 under the same
    ``package>name`` key, so they round-trip through ``.keras`` files. Runs on Keras 3's
    TensorFlow backend only: the math is TensorFlow ops.

    Example:
      >>> import keras
      >>> from tfrobust.layers import KWinnersTakeAll
      >>> KWTA3 = for_keras3(KWinnersTakeAll)
      >>> model = keras.Sequential([keras.Input((8,)), KWTA3(k=0.25)])

    Raises:
      TypeError: for an object that is not a tf_keras (or Keras 3) class.
    """
    if flavour(cls) == "keras3":
        return cls
    if cls in _KERAS3_CLASSES:
        return _KERAS3_CLASSES[cls]
    if not (isinstance(cls, type) and flavour(cls) == "tf_keras"):
        raise TypeError("`cls` must be a tf_keras class (a tfrobust layer, loss, ...). Received: "
                        f"cls={cls!r}")
    if (cls.__module__ or "").startswith("tf_keras"):
        twin = _keras3_twin_of_keras_class(cls)
        _KERAS3_CLASSES[cls] = twin
        return twin
    _OWN_MODULES.add(cls.__module__)
    bases = tuple(for_keras3(b) if flavour(b) == "tf_keras" else b for b in cls.__bases__)
    namespace = {"__module__": cls.__module__, "__qualname__": cls.__qualname__,
                 "__doc__": cls.__doc__, "_tfrobust_tf_keras_class": cls}
    new_cls = types.new_class(cls.__name__, bases, {}, lambda ns: ns.update(namespace))
    _KERAS3_CLASSES[cls] = new_cls  # before the methods: they may name the class itself
    try:
        _fill(cls, new_cls)
    except Exception:
        del _KERAS3_CLASSES[cls]
        raise
    return new_cls


def _fill(cls, new_cls) -> None:
    """Give ``new_cls`` the methods of tf_keras ``cls``, re-bound for Keras 3, and register it."""
    for name, value in vars(cls).items():
        if name in ("__dict__", "__weakref__", "__module__", "__qualname__", "__doc__"):
            continue
        if isinstance(value, types.FunctionType):
            value = _rebind(value, _MEMO, cls, new_cls)
        elif isinstance(value, (staticmethod, classmethod)):
            value = type(value)(_rebind(value.__func__, _MEMO, cls, new_cls))
        elif isinstance(value, property):
            value = property(*(f and _rebind(f, _MEMO, cls, new_cls)
                               for f in (value.fget, value.fset, value.fdel)), value.__doc__)
        setattr(new_cls, name, value)
    if issubclass(new_cls, keras3.layers.Layer) and "save_own_variables" not in vars(cls) and (
            new_cls.save_own_variables is not keras3.layers.Layer.save_own_variables):
        # Keras 3's Dense / Conv store only kernel and bias; a subclass adding weights (a gain)
        # needs the generic Layer version, which stores every variable in creation order.
        new_cls.save_own_variables = keras3.layers.Layer.save_own_variables
        new_cls.load_own_variables = keras3.layers.Layer.load_own_variables
    key = keras.utils.get_registered_name(cls)
    if "name" != key and key != cls.__name__ and ">" in key:
        package, _, short = key.partition(">")
        if short == cls.__name__:
            keras3.saving.register_keras_serializable(package=package)(new_cls)


def keras3_custom_objects() -> dict:
    """``{"tfrobust>Name": Keras 3 class}`` for every tfrobust class registered with tf_keras."""
    return {name: for_keras3(obj) for name, obj in keras.utils.get_custom_objects().items()
            if name.startswith("tfrobust>") and isinstance(obj, type)}


# --------------------------------------------------------------------------- model rebuild

_FLAVOURS = ("keras3", "tf_keras")


def _target_module(to: str):
    return keras3 if to == "keras3" else keras


def _layer_class_name(entry: dict) -> str:
    """``package>Name`` for registered classes, else the public class name."""
    return entry.get("registered_name") or entry["class_name"]


def _node_to_tf_keras(node):
    """A Keras 3 inbound node (``{"args": [...], "kwargs": {...}}``) in tf_keras' list format."""
    if not isinstance(node, dict):
        return node  # already the legacy format

    def history(obj):
        return list(obj["config"]["keras_history"])

    def tensors(value):
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            return [history(value)]
        if isinstance(value, (list, tuple)):
            return [h for v in value for h in tensors(v)]
        return []

    args = node.get("args", [])
    kwargs = {k: (history(v) if isinstance(v, dict) and v.get("class_name") == "__keras_tensor__"
                  else v) for k, v in node.get("kwargs", {}).items()}
    flat = tensors(args)
    if not flat:
        raise ValueError(f"cannot read this Keras 3 node of the model config: {node!r}")
    flat[0].append(kwargs)
    for h in flat[1:]:
        h.append({})
    return flat


# Keys one flavour writes that only record build shapes or defaults the other lacks.
_BUILD_ONLY_KEYS = ("build_config", "ragged", "optional", "sparse", "query_shape", "key_shape",
                    "value_shape")


# Arguments whose default value one flavour writes and the other cannot take (same behaviour).
_HARMLESS_DEFAULTS = {"groups": 1, "data_format": "channels_last", "fill_mode": "constant"}


def _nested_to_tf_keras(layer_name: str, value):
    """A Keras 3 nested object config (initializer, regularizer, constraint) that tf_keras reads."""
    if not (isinstance(value, dict) and "class_name" in value and "config" in value):
        return value
    registered = value.get("registered_name")
    if registered and ">" in registered:
        return {"class_name": registered, "config": value["config"]}
    import inspect

    cls = None
    for namespace in (keras.initializers, keras.regularizers, keras.constraints, keras.activations):
        cls = getattr(namespace, value["class_name"], None)
        if isinstance(cls, type):
            break
    if not isinstance(cls, type):
        return value
    params = inspect.signature(cls.__init__).parameters
    config = {}
    for key, item in (value["config"] or {}).items():
        if key in params:
            config[key] = item
        elif item is not None:
            raise TypeError(f"layer {layer_name!r}: {value['class_name']}({key}={item!r}) has no "
                            f"tf_keras equivalent, so the model cannot be rebuilt as tf_keras")
    return {"class_name": value["class_name"], "config": config}


def _clean_layer_config(name: str, cls, config: dict, to: str) -> dict:
    """The constructor arguments of ``cls`` (the target flavour's class) out of the source config."""
    import inspect

    config = dict(config)
    if to == "tf_keras":
        if isinstance(config.get("dtype"), dict):  # Keras 3 DTypePolicy -> its name
            config["dtype"] = config["dtype"].get("config", {}).get("name", "float32")
        if "batch_shape" in config:
            config["batch_input_shape"] = config.pop("batch_shape")
        config = {key: _nested_to_tf_keras(name, value) for key, value in config.items()}
    if to == "keras3" and isinstance(config.get("axis"), list) and len(config["axis"]) == 1:
        config["axis"] = config["axis"][0]  # tf_keras normalization layers store [3]; Keras 3: 3
    if _is_own(cls):
        return config  # the same class body in both flavours takes the same arguments
    params = set()
    for klass in cls.__mro__:  # BatchNormalization passes renorm & co. on to its base class
        if "__init__" in vars(klass):
            params |= set(inspect.signature(klass.__init__).parameters)
    base_kwargs = {"name", "trainable", "dtype", "dynamic", "autocast", "input_dim", "input_shape",
                   "batch_input_shape", "batch_size", "weights", "activity_regularizer"}
    for key in list(config):
        if key in params or key in base_kwargs:
            continue
        value = config.pop(key)
        if value not in (None, False, {}, [], 0) and key not in _BUILD_ONLY_KEYS and (
                _HARMLESS_DEFAULTS.get(key, object()) != value):
            raise TypeError(
                f"layer {name!r} ({cls.__name__}) uses `{key}={value!r}`, which the {to} "
                f"{cls.__name__} does not take, so the model cannot be rebuilt as {to} exactly")
    if to == "tf_keras" and cls.__name__ == "MultiHeadAttention":  # its from_config reads these
        for key in ("query_shape", "key_shape", "value_shape"):
            config.setdefault(key, None)
    return config


def rebuild(model, to: str, *, check_inputs=None):
    """The same functional/Sequential model in the other Keras flavour, weights copied.

    Each layer's ``get_config`` goes to the target flavour's class ``from_config`` (built-in layers
    by public name, tfrobust layers through :func:`for_keras3`), the graph is wired from the
    model config (Keras 3 node format <-> tf_keras' list format, ``batch_shape`` <->
    ``batch_input_shape``), then every layer's weights are copied by name. ``to_tf_keras`` and the
    Keras 3 model builders are this function.

    Args:
      model: a tf_keras or Keras 3 ``Sequential`` or functional ``Model``.
      to: ``"keras3"`` or ``"tf_keras"``. A model already of that flavour is returned as is.
      check_inputs: optional array; when given, the outputs of both models on it must agree
        within 1e-5 (absolute, plus 1e-5 relative), else ``ValueError``.

    Returns:
      The rebuilt model (a new object; the source model is untouched).

    Raises:
      TypeError: for a subclassed model, or a layer with no counterpart in the target flavour
        (the message names the layer and its class).
      ValueError: for an unknown ``to``, or when ``check_inputs`` shows different outputs.
    """
    if to not in _FLAVOURS:
        raise ValueError(f"`to` must be 'keras3' or 'tf_keras'. Received: to={to!r}")
    source = flavour(model)
    if source is None or not isinstance(model, (keras.Model, keras3.Model)):
        raise TypeError(f"`model` must be a tf_keras or Keras 3 Model. Received: model of type "
                        f"{type(model).__module__}.{type(model).__name__}")
    if source == to:
        return model
    K = _target_module(to)  # noqa: N806
    src_sequential = type(model).__name__ == "Sequential"
    if not src_sequential and type(model).__name__ != "Functional" and not (
            type(model) in (keras.Model, keras3.Model) and hasattr(model, "_nodes_by_depth")):
        raise TypeError(
            f"`model` is a subclassed {type(model).__name__}; only Sequential and functional models "
            f"can be rebuilt as {to} (their graph is in the config). Rebuild it with the "
            f"{to} API, or save its weights and load them into a {to} twin")
    custom = keras3_custom_objects() if to == "keras3" else {
        n: o for n, o in keras.utils.get_custom_objects().items() if n.startswith("tfrobust>")}
    config = model.get_config()
    new_layers = []
    for entry in config["layers"]:
        name = entry.get("config", {}).get("name", entry.get("name"))
        class_name = _layer_class_name(entry)
        cls = custom.get(class_name) or getattr(K.layers, entry["class_name"], None)
        if cls is None:
            src_cls = type(model.get_layer(name)) if name in [lay.name for lay in model.layers] else None
            raise TypeError(
                f"layer {name!r} ({class_name}"
                f"{'' if src_cls is None else ', ' + src_cls.__module__ + '.' + src_cls.__name__}) has "
                f"no {to} counterpart: it is neither a built-in Keras layer nor a registered "
                f"tfrobust layer. Write it as a tf_keras layer registered with "
                f"`tf_keras.utils.register_keras_serializable` and use tfrobust._keras.for_keras3, "
                f"or replace it")
        layer_config = entry["config"]
        if entry["class_name"] == "InputLayer":
            dtype = layer_config.get("dtype") or "float32"
            if isinstance(dtype, dict):
                dtype = dtype.get("config", {}).get("name", "float32")
            shape = layer_config.get("batch_shape", layer_config.get("batch_input_shape"))
            new_layers.append({"class_name": "InputLayer", "name": name,
                               "shape": tuple(shape), "dtype": dtype})
            continue
        if to == "tf_keras" and isinstance(layer_config.get("layer"), dict):  # wrappers
            inner = layer_config["layer"]
            inner_cls = custom.get(_layer_class_name(inner)) or getattr(K.layers, inner["class_name"])
            layer_config = {**layer_config, "layer": {
                "class_name": _layer_class_name(inner),
                "config": _clean_layer_config(inner["config"].get("name"), inner_cls, inner["config"],
                                              to)}}
        layer = cls.from_config(_clean_layer_config(name, cls, layer_config, to))
        new_entry = {"class_name": class_name, "name": name, "layer": layer}
        if "inbound_nodes" in entry:
            nodes = entry["inbound_nodes"]
            new_entry["inbound_nodes"] = ([_node_to_tf_keras(n) for n in nodes] if to == "tf_keras"
                                          else nodes)
        new_layers.append(new_entry)
    if src_sequential:
        rebuilt = K.Sequential(name=config.get("name"))
        for entry in new_layers:
            if entry["class_name"] == "InputLayer":
                rebuilt.add(K.Input(batch_shape=entry["shape"], dtype=entry["dtype"]))
            else:
                rebuilt.add(entry["layer"])
        if not any(e["class_name"] == "InputLayer" for e in new_layers) and model.built:
            rebuilt.build(model.input_shape)
    else:
        tensors = {}
        for entry in new_layers:
            if entry["class_name"] == "InputLayer":
                tensors[(entry["name"], 0, 0)] = K.Input(batch_shape=entry["shape"],
                                                         dtype=entry["dtype"], name=entry["name"])
                continue
            layer = entry["layer"]
            for node_index, node in enumerate(_nodes_legacy(entry["inbound_nodes"])):
                args = [tensors[(h[0], h[1], h[2])] for h in node]
                kwargs = {k: tensors[tuple(v)] if _is_history(v) and tuple(v) in tensors else v
                          for k, v in (node[0][3] if len(node[0]) > 3 else {}).items()}
                out = layer(args[0] if len(args) == 1 else args, **kwargs)
                outs = out if isinstance(out, (list, tuple)) else [out]
                for t, value in enumerate(outs):
                    tensors[(entry["name"], node_index, t)] = value

        def pick(spec):
            spec = _as_history_list(spec)
            return [tensors[(s[0], s[1], s[2])] for s in spec]

        inputs, outputs = pick(config["input_layers"]), pick(config["output_layers"])
        rebuilt = K.Model(inputs[0] if len(inputs) == 1 else inputs,
                          outputs[0] if len(outputs) == 1 else outputs, name=config.get("name"))
    by_name = {lay.name: lay for lay in rebuilt.layers}
    for src in model.layers:
        dst = by_name.get(src.name)
        if dst is None:
            continue
        weights = src.get_weights()
        if len(weights) != len(dst.get_weights()):
            raise TypeError(f"layer {src.name!r} ({type(src).__name__}) has {len(weights)} weights in "
                            f"{source} but {len(dst.get_weights())} in {to}; it cannot be copied")
        dst.set_weights(weights)
    if check_inputs is not None:
        import numpy as np

        a = np.asarray(model(check_inputs, training=False))
        b = np.asarray(rebuilt(check_inputs, training=False))
        if not np.allclose(a, b, rtol=1e-5, atol=1e-5):
            raise ValueError(f"the {to} rebuild of {model.name!r} gives other outputs (max |diff| "
                             f"{float(np.max(np.abs(a - b))):.3g}); a layer behaves differently")
    return rebuilt


def to_tf_keras(model, *, check_inputs=None):
    """The bridge to TF-MOT: a Keras 3 functional/Sequential model rebuilt as tf_keras, same weights.

    ``rebuild(model, "tf_keras")``: refuses (``TypeError``) naming the first layer it cannot map.
    Pass ``check_inputs`` (a few images) to also check that the outputs agree within 1e-5.
    """
    return rebuild(model, "tf_keras", check_inputs=check_inputs)


def to_keras3(model, *, check_inputs=None):
    """A tf_keras functional/Sequential model rebuilt as Keras 3 (tfrobust layers as their twins)."""
    return rebuild(model, "keras3", check_inputs=check_inputs)


def tf_keras_for_tfmot(model):
    """``model`` as TF-MOT needs it: a Keras 3 model through :func:`to_tf_keras`, else unchanged.

    TF-MOT 0.8 wraps tf_keras layers only; the result is a tf_keras model that
    ``tfrobust.tflite_tools.convert`` ships like any other.
    """
    return to_tf_keras(model) if flavour(model) == "keras3" else model


def _is_history(value) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == 3 and isinstance(value[0], str)
            and isinstance(value[1], int) and isinstance(value[2], int))


def _as_history_list(spec):
    """``input_layers`` / ``output_layers`` as a list of ``[name, node, tensor]``."""
    if spec and isinstance(spec[0], str):
        return [list(spec)]
    return [list(s) for s in spec]


def _nodes_legacy(nodes):
    """Inbound nodes of either flavour as lists of ``[name, node, tensor, kwargs]``."""
    return [_node_to_tf_keras(n) for n in nodes]


# --------------------------------------------------------------------------- loading files


def file_format(path) -> tuple[str, str | None]:
    """``(format, flavour)`` of a saved model, read from the file itself (not only its suffix).

    Formats: ``"keras"`` (the zip ``.keras`` format; its ``metadata.json`` says which Keras wrote
    it), ``"h5"`` (its ``keras_version`` attribute), ``"savedmodel"`` (a folder; tf_keras when it
    holds ``keras_metadata.pb``, else a plain TensorFlow SavedModel such as Keras 3's
    ``model.export``, flavour None), ``"tflite"`` (flavour None) and ``"unknown"``.
    """
    import json
    import zipfile
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        if (path / "keras_metadata.pb").exists():
            return "savedmodel", "tf_keras"
        return ("savedmodel", None) if (path / "saved_model.pb").exists() else ("unknown", None)
    with open(path, "rb") as f:
        head = f.read(8)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            meta = json.loads(z.read("metadata.json")) if "metadata.json" in names else {}
        version = str(meta.get("keras_version", ""))
        return "keras", "keras3" if version.startswith("3.") else "tf_keras" if version else None
    if head.startswith(b"\x89HDF"):
        import h5py

        with h5py.File(path, "r") as f:
            version = f.attrs.get("keras_version", b"")
        version = version.decode() if isinstance(version, bytes) else str(version)
        return "h5", "keras3" if version.startswith("3.") else "tf_keras"
    if head[4:8] == b"TFL3":
        return "tflite", None
    return "unknown", None


def load_model(path, *, custom_objects=None):
    """Load a Keras model file with the Keras that wrote it, tfrobust's layers registered.

    Keras 3 ``.keras`` / ``.h5`` files load as Keras 3 models (tfrobust layers as their Keras 3
    twins), tf_keras ones and tf_keras SavedModel folders as tf_keras models; the models are not
    compiled. Import ``tfrobust`` (or ``tfrobust.layers``) first so the layers are registered.

    Args:
      path: a ``.keras`` or ``.h5`` file or a tf_keras SavedModel folder.
      custom_objects: extra ``{name: class}`` for your own layers.

    Returns:
      The model.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: a ``.tflite`` file, a plain SavedModel (no Keras model inside), an unknown
        format, or a file the detected Keras fails to read (the message names the format and
        the Keras that wrote it).
    """
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"`model` not found. Received: model={str(path)!r}")
    fmt, which = file_format(path)
    if fmt == "tflite":
        raise ValueError(f"{str(path)!r} is a .tflite file: it holds no Keras model. Run it with "
                         "tfrobust.tflite_tools.TFLiteModel")
    if fmt == "savedmodel" and which is None:
        raise ValueError(f"{str(path)!r} is a TensorFlow SavedModel without Keras metadata (e.g. "
                         "Keras 3's model.export): load it with tf.saved_model.load")
    if fmt == "unknown" or which is None:
        raise ValueError(f"{str(path)!r} is not a Keras model file tfrobust can read (expected a "
                         ".keras zip with metadata.json, an .h5 file with a keras_version, a "
                         "SavedModel folder or a .tflite file)")
    module = keras3 if which == "keras3" else keras
    objects = {**(keras3_custom_objects() if which == "keras3" else {}), **(custom_objects or {})}
    try:
        return module.models.load_model(str(path), custom_objects=objects or None, compile=False)
    except Exception as e:  # noqa: BLE001 - re-raised with the format and the reason
        raise ValueError(f"cannot read {str(path)!r}: it is a {fmt} file written by "
                         f"{'Keras 3' if which == 'keras3' else 'tf_keras (Keras 2)'} and "
                         f"{'keras' if which == 'keras3' else 'tf_keras'}.models.load_model failed: "
                         f"{type(e).__name__}: {e}") from e
