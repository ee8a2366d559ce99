"""Knowledge distillation (Hinton et al. 2015) from one teacher or an ensemble, through ``fit``."""

from __future__ import annotations

import tensorflow as tf

from tfrobust import _validate as V
from tfrobust._keras import keras
from tfrobust.losses import distillation_loss
from tfrobust.trainers._base import Trainer, average_loss, num_replicas


@keras.utils.register_keras_serializable(package="tfrobust")
class Distiller(Trainer):
    """Train ``student`` to match a teacher (or an ensemble) with soft targets at temperature T.

    ``loss = alpha * L_task(y, z_s) + (1 - alpha) * mean(T^2 * KL(p_T || q_T))`` where ``L_task`` is
    the compiled loss (default cross-entropy on logits) with the true labels, ``p_T`` the teacher's
    softened probabilities (averaged over an ensemble) and ``q_T`` the student's. The teachers run
    in inference mode and are never updated. ``alpha = 0`` distils from unlabelled data (``fit`` on
    images only). Inference (``predict``, ``evaluate``, the saved model) uses the student at T = 1.
    To compress a robust teacher, pass the adversarially trained model as ``teacher``.

    Args:
      student: the tf_keras model being trained (returns logits).
      teacher: a model / callable returning logits, or a list of them (an ensemble).
      temperature: T > 0 (2-20 is typical).
      alpha: weight of the hard-label loss in [0, 1]; Hinton et al. found a small weight best.
      **kwargs: :class:`Trainer` options (``agc_clipping``, ...).

    Example:
      >>> distiller = Distiller(small_cnn(), teacher=big_model, temperature=4.0, alpha=0.1)  # doctest: +SKIP
      >>> distiller.compile(optimizer="adam", metrics=["accuracy"])  # doctest: +SKIP
      >>> distiller.fit(train_ds, epochs=3)  # doctest: +SKIP

    References:
      Hinton et al., Distilling the Knowledge in a Neural Network, 2015, https://arxiv.org/abs/1503.02531
    """

    def __init__(self, student, teacher, *, temperature: float = 4.0, alpha: float = 0.1, **kwargs):
        teachers = list(teacher) if isinstance(teacher, (list, tuple)) else [teacher]
        if not teachers:
            raise ValueError("`teacher` must be a model or a non-empty list of models. Received: teacher=[]")
        for t in teachers:
            if not callable(t):
                raise TypeError("`teacher` must be callable (a model returning logits). "
                                f"Received: teacher={t!r}")
        temperature = V.number("temperature", temperature, minimum=0.0, open_min=True)
        alpha = V.fraction("alpha", alpha)
        super().__init__(student, **kwargs)
        self.teachers = teachers
        self.temperature = temperature
        self.alpha = float(alpha)
        self.distill_tracker = keras.metrics.Mean(name="distill_loss")

    @property
    def student(self):
        return self.model

    def extra_metrics(self):
        return [self.distill_tracker]

    def _teacher_logits(self, x):
        out = []
        for t in self.teachers:
            z = t(x, training=False) if isinstance(t, keras.Model) else t(x)
            out.append(tf.stop_gradient(tf.cast(z, tf.float32)))
        return out

    def prepare_batch(self, x, y, sample_weight):
        return {"teacher": self._teacher_logits(x)}

    def batch_loss(self, x, y, sample_weight, extras):
        logits = self.model(x, training=True)
        soft = distillation_loss(extras["teacher"], logits, self.temperature)
        soft_mean = average_loss(soft, sample_weight)
        return self._objective(y, logits, soft_mean, sample_weight), logits, {"distill": soft_mean}

    def update_extra_metrics(self, y, logs):
        if "distill" in logs:
            self.distill_tracker.update_state(logs["distill"] * num_replicas())

    def _objective(self, y, logits, soft_mean, sample_weight):
        loss = (1.0 - self.alpha) * soft_mean
        if y is not None and self.alpha > 0:
            loss = loss + self.alpha * self.task_loss(y, logits, sample_weight)
        return loss

    def evaluation_step(self, x, y, logits, sample_weight):
        # The same objective as in training, so `val_loss` compares with `loss`.
        soft = average_loss(distillation_loss(self._teacher_logits(x), logits, self.temperature),
                            sample_weight)
        return self._objective(y, logits, soft, sample_weight), {"distill": soft}

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        if y is None and self.alpha > 0:
            raise ValueError("Distiller got images without labels but `alpha` > 0 weights the "
                             "hard-label loss; use alpha=0 to distil from unlabelled data. "
                             f"Received: alpha={self.alpha}")
        return super().train_step(data)

    def _finish(self, total, y, logits, sample_weight, logs):
        if y is None:  # unlabelled distillation: only the losses can be reported
            self.loss_tracker.update_state(total * num_replicas())
            self.update_extra_metrics(y, logs)
            return {m.name: m.result() for m in [self.loss_tracker, self.distill_tracker]}
        return super()._finish(total, y, logits, sample_weight, logs)

    def get_config(self):
        teachers = [keras.saving.serialize_keras_object(t) for t in self.teachers]
        return {**super().get_config(), "teacher": teachers, "temperature": self.temperature,
                "alpha": self.alpha}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["teacher"] = [keras.saving.deserialize_keras_object(t, custom_objects=custom_objects)
                             for t in config["teacher"]]
        model = keras.saving.deserialize_keras_object(config.pop("model"), custom_objects=custom_objects)
        return cls(model, **config)
