"""Adversarial training through ``fit``: FGSM, fast FGSM with random start, PGD (Madry) and TRADES."""

from __future__ import annotations

import tensorflow as tf

from tfrobust import _validate as V
from tfrobust import attacks
from tfrobust._keras import keras
from tfrobust.losses import kl_divergence
from tfrobust.trainers._base import Trainer, average_loss, hard_labels

METHODS = ("fgsm", "fgsm_rs", "pgd", "trades")
EVAL_ATTACKS = (None, "fgsm", "pgd")


@keras.utils.register_keras_serializable(package="tfrobust")
class AdversarialTrainer(Trainer):
    """Adversarial training of a wrapped model with ``fit``.

    Methods (``J`` is the compiled task loss, ``x_adv`` is crafted in the L-inf ball of radius
    ``eps`` with the model in inference mode, outside the gradient tape):

    - ``"fgsm"`` (Goodfellow et al. 2015): ``alpha * J(x, y) + (1 - alpha) * J(x_adv, y)`` with
      ``x_adv = x + eps * sign(grad_x J)`` (:func:`tfrobust.attacks.fgsm`).
    - ``"fgsm_rs"`` (Wong et al. 2020): ``J(x_adv, y)`` with ``delta ~ U(-eps, eps)``, one signed
      step of ``step_size`` (default ``1.25 * eps``) from ``x + delta`` and projection back onto
      the eps-ball and [clip_min, clip_max].
    - ``"pgd"`` (Madry et al. 2018): ``J(x_adv, y)`` with ``x_adv`` from
      :func:`tfrobust.attacks.pgd` (``steps`` steps of ``step_size``, default ``2.5 * eps / steps``,
      uniform random start).
    - ``"trades"`` (Zhang et al. 2019): ``J(x, y) + beta * KL(f(x) || f(x_adv))`` with ``x_adv``
      maximising that KL: PGD from ``x + 0.001 * N(0, 1)`` (``steps`` steps of ``step_size``,
      default 0.01 as in the TRADES code) run by :func:`tfrobust.attacks.pgd` on a two-logit view
      ``[0, KL]`` of the model, whose cross-entropy against class 0, ``log(1 + exp(KL))``, is
      increasing in KL, so its signed gradient steps are exactly those of the KL.

    Eps warm-up: with ``eps_warmup_steps = W > 0`` the training radius is
    ``eps * min(1, (t + 1) / W)`` at optimizer step ``t`` (step sizes scale with it). The step
    counter is the optimizer's, so a run resumed by BackupAndRestore continues the schedule.

    Metrics: ``loss``, the compiled metrics (on the logits the loss is computed on: clean for
    ``fgsm``/``trades``, adversarial for ``fgsm_rs``/``pgd``), and ``adv_accuracy`` (accuracy on
    the training attack's examples). In ``evaluate`` (and ``validation_data``) the compiled metrics
    are clean, and ``eval_attack="pgd"`` (or ``"fgsm"``) adds ``adv_accuracy`` at the full eps.

    Labels may be sparse ``[N]`` or one-hot/soft ``[N, K]`` (mixup, label smoothing); the attacks
    then target the argmax label.

    Defenses with a label-conditioned training path (CAS, CIFS, PCL: ``defended_cnn(defense,
    return_train_model=True)`` or ``tfrobust.layers.label_conditioned_pair``) are trained as their
    papers train them by passing the pair, ``AdversarialTrainer((train_model, model), ...)`` (or
    ``AdversarialTrainer(model, train_model=train_model, ...)``):

    - ``x_adv`` is crafted on the **inference model** ``model`` (``training=False``: CAS masks
      channels with the probe's predicted class, CIFS with its top-2), the model an attacker
      faces and the path the official CAS and CIFS code attacks (PyTorch ``eval()`` mode). Its
      gradients are those of the deployed graph: the mask's class selection is piecewise constant
      and gets no gradient, exactly as in the papers' code. (The CAS code also adds ``beta`` times
      the probe's cross-entropy to the *attack's* objective; the inference model has no probe
      output, so the attack here is plain cross-entropy on the logits, i.e. Madry's PGD on the
      deployed model.)
    - The loss is computed on the **training path** ``train_model([x_adv, y])`` (true-label mask)
      and includes the layers' own ``add_loss`` terms of that forward pass: CAS ``J(x') + beta *
      L_CAS(x')``, CIFS ``J(x') + beta * CE(probe(x'), y)``, PCL ``J(x') + weight * L_PC(f(x'))``
      for ``pgd``/``fgsm_rs``; for ``fgsm``/``trades`` one pass over ``[x; x']`` averages the
      terms over both halves.
    - ``adv_accuracy`` in training is the inference model's on ``x_adv`` (the training path's
      true-label mask would flatter it); ``accuracy`` is on the training path's logits.

    The random starts of ``fgsm_rs`` and ``trades`` use stateless random numbers keyed on the
    optimizer step, the seed and the replica, so an interrupted run resumed with BackupAndRestore
    repeats exactly the losses of an uninterrupted one; ``pgd`` draws its random start from the
    attack's global RNG (set ``random_start=False`` for a bit-reproducible resume).

    Args:
      model: the tf_keras model (returns logits), or a ``(train_model, model)`` pair.
      method: one of ``"fgsm"``, ``"fgsm_rs"``, ``"pgd"``, ``"trades"``.
      eps: L-inf radius (images in [clip_min, clip_max]).
      alpha: weight of the clean loss for ``"fgsm"``, in [0, 1].
      step_size: attack step (defaults per method above).
      steps: attack steps for ``"pgd"`` / ``"trades"``.
      beta: TRADES trade-off weight (6.0 in the paper).
      random_start: PGD random start.
      eps_warmup_steps: linear eps ramp length in optimizer steps (0 = none).
      eval_attack: None, ``"fgsm"`` or ``"pgd"``: adversarial accuracy reported by ``evaluate``.
      eval_steps: PGD steps of the evaluation attack (step ``2.5 * eps / eval_steps``).
      clip_min, clip_max: valid input range.
      seed: seed of the stateless random starts.
      **kwargs: :class:`Trainer` options (``train_model``, ``agc_clipping``, ...).

    Example:
      >>> trainer = AdversarialTrainer(madry_cnn(), method="pgd", eps=0.1, steps=7)  # doctest: +SKIP
      >>> trainer.compile(optimizer="adam", metrics=["accuracy"])  # doctest: +SKIP
      >>> backup = keras.callbacks.BackupAndRestore("bk")  # doctest: +SKIP
      >>> trainer.fit(train_ds, epochs=10, callbacks=[backup])  # doctest: +SKIP
      >>> trainer.save_inner("robust.keras")  # doctest: +SKIP
      >>> pair = defended_cnn("cas", return_train_model=True)  # CAS + PGD-7 AT  # doctest: +SKIP
      >>> trainer = AdversarialTrainer(pair, method="pgd", eps=0.1, steps=7)  # doctest: +SKIP

    References:
      Goodfellow et al. 2015, https://arxiv.org/abs/1412.6572;
      Madry et al. 2018, https://arxiv.org/abs/1706.06083;
      Wong et al., Fast is better than free, ICLR 2020, https://arxiv.org/abs/2001.03994;
      Zhang et al., TRADES, ICML 2019, https://arxiv.org/abs/1901.08573
    """

    def __init__(self, model, *, method: str = "pgd", eps: float = 0.1, alpha: float = 0.5,
                 step_size: float | None = None, steps: int = 7, beta: float = 6.0,
                 random_start: bool = True, eps_warmup_steps: int = 0, eval_attack: str | None = None,
                 eval_steps: int = 10, clip_min: float = 0.0, clip_max: float = 1.0, seed: int = 0,
                 **kwargs):
        V.choice("method", method, METHODS)
        V.choice("eval_attack", eval_attack, EVAL_ATTACKS)
        self.eps = V.number("eps", eps, minimum=0.0)
        self.alpha = V.fraction("alpha", alpha)
        self.steps = V.integer("steps", steps, minimum=1)
        self.beta = V.number("beta", beta, minimum=0.0)
        self.eps_warmup_steps = V.integer("eps_warmup_steps", eps_warmup_steps, minimum=0)
        self.eval_steps = V.integer("eval_steps", eval_steps, minimum=1)
        self.clip_min, self.clip_max = V.clip_range(clip_min, clip_max)
        if self.eps > self.clip_max - self.clip_min:
            raise ValueError("`eps` must not exceed the clip range's width (clip_max - clip_min = "
                             f"{self.clip_max - self.clip_min}). Received: eps={eps!r}")
        self.seed = V.seed(seed)
        if self.seed is None:
            raise ValueError("`seed` must be an int: the trainer's attacks draw from stateless "
                             "random ops seeded per step. Received: seed=None")
        V.boolean("random_start", random_start)
        if step_size is not None:
            step_size = V.number("step_size", step_size, minimum=0.0, open_min=True)
        super().__init__(model, **kwargs)
        self.method = method
        self.random_start = random_start
        self.step_size = step_size
        self.eval_attack = eval_attack
        self.adv_accuracy = keras.metrics.SparseCategoricalAccuracy(name="adv_accuracy")

    # ------------------------------------------------------------------ schedule
    def default_step_size(self) -> float:
        if self.step_size is not None:
            return self.step_size
        if self.method == "fgsm_rs":
            return 1.25 * self.eps
        if self.method == "trades":
            return 0.01
        return attacks.default_step_size(self.eps, self.steps)

    def current_eps(self, iterations=None):
        """The training radius at optimizer step ``iterations`` (default: the current step)."""
        if iterations is None:
            iterations = self.optimizer.iterations
        eps = tf.constant(self.eps, tf.float32)
        if self.eps_warmup_steps == 0:
            return eps
        t = tf.cast(iterations, tf.float32) + 1.0
        return eps * tf.minimum(1.0, t / float(self.eps_warmup_steps))

    def _rng_seed(self):
        replica = tf.distribute.get_replica_context()
        rid = replica.replica_id_in_sync_group if replica is not None else 0
        step = tf.cast(self.optimizer.iterations, tf.int64)
        return tf.stack([tf.constant(self.seed, tf.int64) * 1000003 + tf.cast(rid, tf.int64), step])

    # ------------------------------------------------------------------ attacks
    def _attack(self, x, y):
        eps = self.current_eps()
        scale = eps / self.eps if self.eps > 0 else tf.constant(0.0)
        step = self.default_step_size() * scale
        yh = hard_labels(y)
        lo, hi = self.clip_min, self.clip_max
        if self.method == "fgsm":
            return attacks.fgsm(self.logits_fn, x, yh, eps=eps, clip_min=lo, clip_max=hi)
        if self.method == "fgsm_rs":
            delta = tf.random.stateless_uniform(tf.shape(x), self._rng_seed(), -1.0, 1.0) * eps
            x0 = tf.clip_by_value(x + delta, lo, hi)
            x1 = attacks.fgsm(self.logits_fn, x0, yh, eps=step, clip_min=lo, clip_max=hi)
            return tf.clip_by_value(x + tf.clip_by_value(x1 - x, -eps, eps), lo, hi)
        if self.method == "pgd":
            return attacks.pgd(self.logits_fn, x, yh, eps=eps, step_size=step, steps=self.steps,
                               random_start=self.random_start, clip_min=lo, clip_max=hi)
        # TRADES: maximise KL(f(x) || f(x')) through the two-logit view [0, KL].
        p_logits = tf.stop_gradient(tf.cast(self.logits_fn(x), tf.float32))

        def kl_view(z):
            kl = kl_divergence(p_logits, tf.cast(self.logits_fn(z), tf.float32))
            return tf.stack([tf.zeros_like(kl), kl], axis=1)

        noise = 0.001 * tf.random.stateless_normal(tf.shape(x), self._rng_seed())
        x0 = tf.clip_by_value(x + noise, lo, hi)
        zeros = tf.zeros_like(yh)
        x1 = attacks.pgd(kl_view, x0, zeros, eps=eps, step_size=step, steps=self.steps,
                         random_start=False, clip_min=lo, clip_max=hi)
        # pgd projected around x0; the TRADES ball is around x.
        return tf.clip_by_value(x + tf.clip_by_value(x1 - x, -eps, eps), lo, hi)

    def prepare_batch(self, x, y, sample_weight):
        x_adv = tf.stop_gradient(self._attack(x, y))
        extras = {"x_adv": x_adv}
        if self.train_model is not None:
            # The training path masks channels with the true label, so its accuracy flatters the
            # model; adv_accuracy is measured on the inference path, as an attacker meets it.
            extras["inference_adv_logits"] = tf.stop_gradient(self.model(x_adv, training=False))
        return extras

    def batch_loss(self, x, y, sample_weight, extras):
        x_adv = extras["x_adv"]
        logs = {}
        if "inference_adv_logits" in extras:
            logs["adv_logits"] = extras["inference_adv_logits"]
        if self.method in ("fgsm_rs", "pgd"):
            adv = self.forward(x_adv, y, training=True)
            return self.task_loss(y, adv, sample_weight), adv, {"adv_logits": adv, **logs}
        # fgsm and trades: one forward pass over [x; x_adv], so the layers' add_loss terms (CAS,
        # CIFS, PCL) average over the clean and the adversarial halves.
        n = tf.shape(x)[0]
        both = self.forward(tf.concat([x, x_adv], axis=0), tf.concat([y, y], axis=0), training=True)
        clean, adv = both[:n], both[n:]
        logs = {"adv_logits": adv, **logs}
        if self.method == "fgsm":
            loss = (self.alpha * self.task_loss(y, clean, sample_weight)
                    + (1.0 - self.alpha) * self.task_loss(y, adv, sample_weight))
            return loss, clean, logs
        # float32 KL: under mixed_float16 the logits are float16 and the task loss is float32.
        robust = average_loss(kl_divergence(tf.cast(clean, tf.float32), tf.cast(adv, tf.float32)),
                              sample_weight)
        return self.task_loss(y, clean, sample_weight) + self.beta * robust, clean, logs

    # ------------------------------------------------------------------ metrics
    def extra_metrics(self):
        return [self.adv_accuracy]

    def update_extra_metrics(self, y, logs):
        if "adv_logits" in logs:
            self.adv_accuracy.update_state(hard_labels(y), logs["adv_logits"])

    def evaluation_step(self, x, y, logits, sample_weight):
        loss = self.task_loss(y, logits, sample_weight)
        if self.eval_attack is None:
            return loss, {}
        yh = hard_labels(y)
        if self.eval_attack == "fgsm":
            x_adv = attacks.fgsm(self.logits_fn, x, yh, eps=self.eps, clip_min=self.clip_min,
                                 clip_max=self.clip_max)
        else:
            x_adv = attacks.pgd(self.logits_fn, x, yh, eps=self.eps,
                                step_size=attacks.default_step_size(self.eps, self.eval_steps),
                                steps=self.eval_steps,
                                clip_min=self.clip_min, clip_max=self.clip_max)
        return loss, {"adv_logits": self.model(x_adv, training=False)}

    def get_config(self):
        return {**super().get_config(), "method": self.method, "eps": self.eps, "alpha": self.alpha,
                "step_size": self.step_size, "steps": self.steps, "beta": self.beta,
                "random_start": self.random_start, "eps_warmup_steps": self.eps_warmup_steps,
                "eval_attack": self.eval_attack, "eval_steps": self.eval_steps,
                "clip_min": self.clip_min, "clip_max": self.clip_max, "seed": self.seed}
