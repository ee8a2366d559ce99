"""The trainer base class: a ``keras.Model`` that wraps a user model and owns its ``train_step``.

Everything Keras users rely on keeps working because the trainer *is* a Keras model: ``compile``,
``fit``, ``evaluate``, ``predict``, callbacks (ModelCheckpoint, BackupAndRestore, TensorBoard,
EarlyStopping), compiled metrics and ``tf.distribute`` strategies. What gets saved is the wrapped
model: ``trainer.save(path)`` (which ModelCheckpoint calls) and :meth:`Trainer.save_inner` write
``trainer.model``, a plain Keras model that loads without tfrobust.

Mixed precision follows Keras: under a ``mixed_float16`` policy ``compile`` wraps the optimizer in
``keras.mixed_precision.LossScaleOptimizer`` (unless it already is one) and ``train_step`` scales
the loss inside the tape and unscales the gradients before clipping and applying them, as
``Model.train_step`` does through ``optimizer.minimize``; losses are computed on float32 logits.
``mixed_bfloat16`` needs no loss scaling (bfloat16 has float32's exponent range).
"""

from __future__ import annotations

import tensorflow as tf

from tfrobust._keras import check_tf_keras_model, flavour, for_keras3, keras
from tfrobust.trainers._agc import adaptive_clip_gradients, check_agc_args
from tfrobust.utils import atomic_save_model


def is_keras3() -> bool:
    """True inside the Keras 3 twin of a trainer (``keras`` is re-bound there, see ``for_keras3``)."""
    return keras.__name__ == "keras"


def num_replicas() -> int:
    return tf.distribute.get_strategy().num_replicas_in_sync


def average_loss(per_example, sample_weight=None):
    """Mean over the *global* batch, the reduction ``tf.distribute`` needs for summed gradients."""
    per_example = tf.convert_to_tensor(per_example)
    if sample_weight is not None:
        sample_weight = tf.cast(tf.reshape(sample_weight, [-1]), per_example.dtype)
    return tf.nn.compute_average_loss(per_example, sample_weight=sample_weight)


def hard_labels(y):
    """Class indices from sparse ``[N]`` or one-hot/soft ``[N, K]`` labels (int32)."""
    y = tf.convert_to_tensor(y)
    if y.shape.rank == 2:
        return tf.argmax(y, axis=-1, output_type=tf.int32)
    return tf.cast(tf.reshape(y, [-1]), tf.int32)


def split_pair(model, train_model=None):
    """``(model, train_model)`` from ``model`` or a ``(train_model, model)`` pair, checked."""
    if isinstance(model, (tuple, list)):
        if len(model) != 2 or train_model is not None:
            raise ValueError("`model` must be a model or a (train_model, model) pair, and "
                             "`train_model` must not be given with a pair. "
                             f"Received: model={model!r}, train_model={train_model!r}")
        train_model, model = model
    check_tf_keras_model(model)
    if train_model is None:
        return model, None
    check_tf_keras_model(train_model)
    if len(train_model.inputs or ()) != 2:
        raise ValueError("`train_model` must take [images, labels] (a label-conditioned training "
                         f"model). Received: train_model with {len(train_model.inputs or ())} inputs")
    if {v.ref() for v in train_model.trainable_variables} != {v.ref() for v in model.trainable_variables}:
        raise ValueError("`train_model` and `model` must share every trainable weight (build both "
                         "with tfrobust.layers.label_conditioned_pair or defended_cnn(..., "
                         f"return_train_model=True)). Received: train_model={train_model.name!r}, "
                         f"model={model.name!r}")
    return model, train_model


@keras.utils.register_keras_serializable(package="tfrobust")
class Trainer(keras.Model):
    """Train a wrapped model with ``fit``; the base class trains on the plain task loss.

    Subclasses override :meth:`prepare_batch` (work done *outside* the gradient tape, e.g. crafting
    adversarial examples) and :meth:`batch_loss` (the objective, inside the tape). The base class
    adds the model's regularisation losses, optional adaptive gradient clipping and the metrics.

    The task loss is the loss given to ``compile`` or, when none is given, cross-entropy on logits
    (sparse for ``[N]`` labels, categorical for one-hot/soft ``[N, K]`` labels such as mixup's). A
    compiled loss must take logits (``from_logits=True``): tfrobust models return logits.

    Label-conditioned defenses (CAS, CIFS, PCL) have two entry points sharing every weight: the
    training model ``[x, y] -> logits`` (the true label picks the channel mask and the layers
    ``add_loss`` their own terms) and the inference model ``x -> logits`` (what is attacked,
    evaluated, saved and deployed). Pass both, as ``Trainer((train_model, model))`` (what
    ``defended_cnn(..., return_train_model=True)`` and ``label_conditioned_pair`` return) or as
    ``Trainer(model, train_model=train_model)``: the objective is then computed on the training
    path (:meth:`forward`, the labels as hard class ids) and includes the ``add_loss`` terms of
    that forward pass; ``evaluate``, ``predict`` and saving use ``model``.

    Args:
      model: the tf_keras model to train (returns logits), or a ``(train_model, model)`` pair.
      train_model: optional label-conditioned training model ``[x, y] -> logits`` sharing all
        of ``model``'s trainable weights.
      agc_clipping: lambda of :func:`adaptive_clip_gradients`; None disables AGC.
      agc_eps: weight-norm floor of AGC.
      agc_exclude: substrings of variable names AGC leaves alone (the paper excludes the final
        classifier, e.g. ``("logits",)`` for tfrobust models).
      name: Keras name (default ``"<model name>_trainer"``).

    Example:
      >>> trainer = Trainer(tfrobust.models.small_cnn(), agc_clipping=0.04)  # doctest: +SKIP
      >>> trainer.compile(optimizer="adam", metrics=["accuracy"])  # doctest: +SKIP
      >>> trainer.fit(train_ds, epochs=2)  # doctest: +SKIP
      >>> trainer.save_inner("model.keras")  # doctest: +SKIP
    """

    def __new__(cls, *args, **kwargs):
        """A Keras 3 model gets the Keras 3 twin of the trainer class (same name and arguments)."""
        model = args[0] if args else kwargs.get("model")
        if isinstance(model, (tuple, list)) and model:
            model = model[-1]
        if flavour(model) == "keras3" and flavour(cls) == "tf_keras":
            return for_keras3(cls)(*args, **kwargs)
        return super().__new__(cls, *args, **kwargs)

    def __init__(self, model, *, train_model=None, agc_clipping: float | None = None,
                 agc_eps: float = 1e-3, agc_exclude=(), name: str | None = None, **kwargs):
        model, train_model = split_pair(model, train_model)
        if agc_clipping is not None:
            check_agc_args(agc_clipping, agc_eps)
        if isinstance(agc_exclude, str) or not all(isinstance(s, str) for s in agc_exclude):
            raise TypeError(f"`agc_exclude` must be a list of strings. Received: agc_exclude={agc_exclude!r}")
        super().__init__(name=name or f"{model.name}_trainer", **kwargs)
        self.model = model
        self.train_model = train_model
        self.agc_clipping = agc_clipping
        self.agc_eps = agc_eps
        self.agc_exclude = tuple(agc_exclude)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self._sparse_ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
        self._dense_ce = keras.losses.CategoricalCrossentropy(from_logits=True, reduction="none")

    # ------------------------------------------------------------------ Keras plumbing
    def call(self, inputs, training=None):
        return self.model(inputs, training=training)

    @property
    def trainable_weights(self):
        """The wrapped model's trainable weights: exactly what ``train_step`` updates.

        Keras would also list those of every other model the trainer holds (a Distiller's
        teachers, which are never updated). BackupAndRestore builds the optimizer on this list;
        slots for a teacher would waste memory and, for a teacher built outside a
        ``tf.distribute`` scope, fail (a slot cannot be colocated with a non-distributed variable).
        """
        return self.model.trainable_weights

    def extra_metrics(self) -> list:
        """Metrics a subclass reports besides the loss and the compiled metrics."""
        return []

    @property
    def metrics(self):
        # The compiled loss's own tracker is replaced by `loss_tracker`: an objective such as
        # alpha * J(x) + (1 - alpha) * J(x_adv) calls the task loss twice per step.
        out = [self.loss_tracker]
        if is_keras3():  # Keras 3: the compiled metrics as one CompileMetrics, Keras' tracker out
            extra = self.extra_metrics()
            skip = {id(m) for m in [self.loss_tracker, *extra]}
            out += [m for m in super().metrics if id(m) not in skip and m.name != "loss"]
            return out + extra
        compiled = getattr(self, "compiled_metrics", None)
        if compiled is not None:
            out += compiled.metrics
        return out + self.extra_metrics()

    def task_loss(self, y, logits, sample_weight=None):
        """The task loss as a scalar, scaled for ``tf.distribute`` (sum of replica gradients)."""
        # float16 logits (mixed precision) would put the softmax and its log in float16.
        logits = tf.cast(logits, tf.float32)
        if getattr(self, "loss", None) and is_keras3():  # Keras 3 has no compiled_loss
            loss = keras.losses.get(self.loss) if isinstance(self.loss, (str, dict)) else self.loss
            if isinstance(loss, keras.losses.Loss):
                return loss(y, logits, sample_weight) / num_replicas()
            return average_loss(loss(y, logits), sample_weight)
        if getattr(self, "loss", None):  # compile() stores `loss or {}`
            return self.compiled_loss(y, logits, sample_weight)
        y = tf.convert_to_tensor(y)
        per_example = self._dense_ce(y, logits) if y.shape.rank == 2 else self._sparse_ce(y, logits)
        return average_loss(per_example, sample_weight)

    def regularization_loss(self):
        """The ``losses`` of the last forward pass (weight penalties, layers' ``add_loss`` terms).

        Keras clears a layer's ``add_loss`` terms at each top-level call, so inside the tape these
        are the terms of the forward pass the objective was computed on (for a label-conditioned
        pair: the training path's CAS / CIFS probe or PCL terms on that batch).
        """
        losses = (self.train_model if self.train_model is not None else self.model).losses
        if not losses:
            return tf.constant(0.0)
        return tf.add_n([tf.cast(v, tf.float32) for v in losses]) / num_replicas()

    def forward(self, x, y, training=True):
        """Logits of the training path: ``train_model([x, class ids])`` for a pair, else ``model(x)``."""
        if self.train_model is None:
            return self.model(x, training=training)
        return self.train_model([x, hard_labels(y)], training=training)

    def logits_fn(self, x):
        """The wrapped model in inference mode: the ``model_fn`` handed to attacks."""
        return self.model(x, training=False)

    # ------------------------------------------------------------------ hooks for subclasses
    def prepare_batch(self, x, y, sample_weight):
        """Work done before the gradient tape opens (e.g. attacks); returns a dict for batch_loss."""
        del x, y, sample_weight
        return {}

    def batch_loss(self, x, y, sample_weight, extras):
        """Return ``(loss, logits_for_metrics, logs)`` computed inside the gradient tape."""
        del extras
        logits = self.forward(x, y, training=True)
        return self.task_loss(y, logits, sample_weight), logits, {}

    def update_extra_metrics(self, y, logs):
        del y, logs

    # ------------------------------------------------------------------ compile
    def compile(self, optimizer="rmsprop", *args, **kwargs):
        """``keras.Model.compile``, plus loss scaling under float16 and a built trainer.

        The optimizer is wrapped in ``keras.mixed_precision.LossScaleOptimizer`` (dynamic loss
        scale) when the trainer or the wrapped model computes in float16 and it is not wrapped
        already: Keras wraps only when the compiling model's own policy is ``mixed_float16``, and
        a trainer built under a float32 policy around a float16 model would otherwise train
        without loss scaling.

        The trainer is marked built when the wrapped model is: its weights *are* the wrapped
        model's, but Keras marks a subclassed model built on its first ``__call__``, which ``fit``
        never makes (``train_step`` calls the wrapped model). BackupAndRestore needs a built model
        to build the optimizer before restoring its slots (it warns otherwise). The mark is set
        after ``super().compile``: compiling a *built* model inside a strategy scope makes Keras
        require that every variable was created in that scope, which a frozen Distiller teacher
        built outside it (read-only, legitimate) is not.
        """
        self.built = False
        try:
            super().compile(optimizer, *args, **kwargs)
        finally:
            self.built = bool(self.model.built)
        if self.computes_in_float16() and is_keras3():
            raise NotImplementedError("float16 training of a Keras 3 model with a tfrobust trainer "
                                      "is not supported yet (its loss scaling is tf_keras'); use "
                                      "float32 or mixed_bfloat16, or a tf_keras model")
        if self.computes_in_float16() and not isinstance(self.optimizer,
                                                         keras.mixed_precision.LossScaleOptimizer):
            self.optimizer = keras.mixed_precision.LossScaleOptimizer(self.optimizer)

    def fit(self, *args, **kwargs):
        """``keras.Model.fit``; callbacks must be of the trainer's Keras flavour (clear error if not)."""
        for callback in kwargs.get("callbacks") or ():
            if flavour(callback) not in (None, flavour(self)):
                raise TypeError(
                    f"callback {type(callback).__name__} is a {flavour(callback)} callback but this "
                    f"trainer trains a {flavour(self)} model. Use the callbacks of the model's Keras "
                    f"(`keras.callbacks` for a Keras 3 model, `tf_keras.callbacks` for a tf_keras "
                    f"one). Received: callbacks={kwargs['callbacks']!r}")
        return super().fit(*args, **kwargs)

    def computes_in_float16(self) -> bool:
        """True when the trainer's or the wrapped model's compute dtype is float16."""
        return "float16" in (self.compute_dtype, self.model.compute_dtype)

    # ------------------------------------------------------------------ steps
    def _clip(self, grads, variables):
        if self.agc_clipping is None:
            return grads
        idx = [i for i, v in enumerate(variables) if not any(s in v.name for s in self.agc_exclude)]
        clipped = adaptive_clip_gradients([grads[i] for i in idx], [variables[i] for i in idx],
                                          clipping=self.agc_clipping, eps=self.agc_eps)
        grads = list(grads)
        for i, g in zip(idx, clipped):
            grads[i] = g
        return grads

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        extras = self.prepare_batch(x, y, sample_weight)
        optimizer = self.optimizer
        # Loss scaling as in Keras' LossScaleOptimizer.compute_gradients: scale inside the tape so
        # float16 backward passes do not underflow, unscale before AGC sees the gradients;
        # apply_gradients skips a step with non-finite gradients and lowers the scale.
        scaled = isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer)
        with tf.GradientTape() as tape:
            loss, logits, logs = self.batch_loss(x, y, sample_weight, extras)
            total = loss + self.regularization_loss()
            target = optimizer.get_scaled_loss(total) if scaled else total
        variables = self.model.trainable_variables
        grads = tape.gradient(target, variables)
        if scaled:
            grads = optimizer.get_unscaled_gradients(grads)
        grads = self._clip(grads, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return self._finish(total, y, logits, sample_weight, logs)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        logits = self.model(x, training=False)
        loss, logs = self.evaluation_step(x, y, logits, sample_weight)
        total = loss + self.regularization_loss()
        return self._finish(total, y, logits, sample_weight, logs)

    def evaluation_step(self, x, y, logits, sample_weight):
        """``(loss, logs)`` of ``test_step``: default the clean task loss and no extra logs."""
        del x
        return self.task_loss(y, logits, sample_weight), {}

    def _finish(self, total, y, logits, sample_weight, logs):
        # `total` was divided by the replica count for the gradient sum; undo it for the metric.
        self.loss_tracker.update_state(total * num_replicas())
        if is_keras3():
            self.update_extra_metrics(y, logs)
            return self.compute_metrics(None, y, logits, sample_weight)
        if getattr(self, "compiled_metrics", None) is not None:
            self.compiled_metrics.update_state(y, logits, sample_weight)
        self.update_extra_metrics(y, logs)
        return {m.name: m.result() for m in self.metrics}

    # ------------------------------------------------------------------ saving
    def save(self, filepath, *args, **kwargs):
        """Save the *wrapped* model (what ModelCheckpoint and users want to deploy)."""
        return self.model.save(filepath, *args, **kwargs)

    def save_inner(self, path):
        """Atomically save the wrapped model to ``path`` (``.keras``, ``.h5`` or a SavedModel folder)."""
        return atomic_save_model(self.model, path)

    def get_config(self):
        if self.train_model is not None:
            # Two models sharing weights do not survive serialization as two configs.
            raise NotImplementedError("A trainer of a (train_model, model) pair has no config: "
                                      "rebuild the pair and the trainer in code, and save the "
                                      "inference model with save_inner().")
        return {
            "model": keras.saving.serialize_keras_object(self.model),
            "agc_clipping": self.agc_clipping,
            "agc_eps": self.agc_eps,
            "agc_exclude": list(self.agc_exclude),
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        model = keras.saving.deserialize_keras_object(config.pop("model"), custom_objects=custom_objects)
        return cls(model, **config)
