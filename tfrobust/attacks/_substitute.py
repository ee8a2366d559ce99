"""Black-box substitute attack (Papernot et al. 2017): learn a local copy from labels, then transfer.

The attacker only sees the oracle's labels ``O~(x) = argmax_j O_j(x)``. Algorithm 1 of the paper:

    S_0 <- a small set of held-out images (150 for MNIST)
    for rho in 0 .. rounds - 1:
        D <- {(x, O~(x)) : x in S_rho}                 # label with the oracle (new points only)
        theta_F <- train(F, D)                           # fit the substitute F
        S_{rho+1} <- {x + lambda_rho * sign(J_F(x)[O~(x)]) : x in S_rho} U S_rho

where ``J_F(x)[c]`` is the gradient of the substitute's logit ``c`` with respect to ``x`` (the
Jacobian row of the oracle's label) and ``lambda_rho = lambda * (-1)^floor(rho / tau)`` (the periodic
step size of section 4.2; a constant ``lambda`` when ``tau`` is None). Adversarial examples crafted
on the substitute with FGSM or PGD are then sent to the oracle: they *transfer*.
"""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np
import tensorflow as tf

from tfrobust import _validate as V
from tfrobust._keras import check_tf_keras_model, keras
from tfrobust.attacks._lbfgs import _as_output, _check_images
from tfrobust.attacks._pgd import fgsm, pgd
from tfrobust.models import small_cnn

__all__ = ["SubstituteResult", "substitute_attack"]


@dataclasses.dataclass
class SubstituteResult:
    """What a substitute attack produced and what it cost.

    Attributes:
      x_adv: adversarial examples crafted on the substitute, ``tf.Tensor`` like ``x``.
      substitute: the trained substitute (a tf_keras model returning logits).
      oracle_queries: every image ever sent to the oracle (training + evaluation).
      training_queries: images labelled by the oracle to train the substitute
        (``|S_0| * 2^(rounds - 1)``).
      substitute_agreement: fraction of the attacked images ``x`` on which the substitute predicts
        the oracle's label (the paper's substitute accuracy, measured against the oracle).
      transfer_success_rate: fraction of ``x`` whose oracle label changes under the attack.
      oracle_labels: oracle labels of ``x`` (int64 ``[N]``).
      adversarial_labels: oracle labels of ``x_adv`` (int64 ``[N]``).
      history: one dict per round: ``round``, ``lambda``, ``train_size`` and the substitute's
        ``train_agreement`` with the oracle on the labelled set after training.
      config: the attack configuration.
    """

    x_adv: tf.Tensor
    substitute: object
    oracle_queries: int
    training_queries: int
    substitute_agreement: float
    transfer_success_rate: float
    oracle_labels: np.ndarray
    adversarial_labels: np.ndarray
    history: list
    config: dict

    def to_dict(self) -> dict:
        """JSON-friendly summary (no arrays of images, no model)."""
        return {
            "oracle_queries": self.oracle_queries,
            "training_queries": self.training_queries,
            "substitute_agreement": self.substitute_agreement,
            "transfer_success_rate": self.transfer_success_rate,
            "num_examples": int(len(self.oracle_labels)),
            "history": [dict(h) for h in self.history],
            "config": dict(self.config),
        }


class _LabelOracle:
    """Calls the user's oracle on NumPy batches, keeps only labels and counts every image sent."""

    def __init__(self, oracle, batch_size):
        self._oracle = oracle
        self._batch_size = batch_size
        self.queries = 0
        self.num_classes = None

    def __call__(self, images):
        labels = []
        for i in range(0, len(images), self._batch_size):
            chunk = np.ascontiguousarray(images[i:i + self._batch_size], dtype=np.float32)
            out = np.asarray(self._oracle(chunk))
            self.queries += len(chunk)
            if out.ndim == 2 and out.shape[0] == len(chunk):
                self.num_classes = out.shape[1]
                out = out.argmax(axis=1)
            elif out.ndim != 1 or out.shape[0] != len(chunk) or not (
                    np.issubdtype(out.dtype, np.integer) or np.all(out == np.round(out))):
                raise ValueError("`oracle` must return integer labels [N] or scores [N, K] for a batch "
                                 f"of N={len(chunk)} images. Received: output of shape {out.shape} "
                                 f"and dtype {out.dtype}")
            labels.append(out.astype(np.int64))
        return np.concatenate(labels) if labels else np.zeros([0], np.int64)


class _SubstituteOps:
    """The substitute's compiled label and Jacobian-sign functions, traced once per attack."""

    def __init__(self, model, batch_size=256):
        self._batch_size = batch_size

        @tf.function(reduce_retracing=True, autograph=False)
        def labels(xb):
            return tf.argmax(model(xb, training=False), axis=1)

        @tf.function(reduce_retracing=True, autograph=False)
        def grad_sign(xb, yb):
            with tf.GradientTape() as tape:
                tape.watch(xb)
                logits = model(xb, training=False)
                picked = tf.reduce_sum(tf.gather(logits, yb, axis=1, batch_dims=1))
            return tf.sign(tape.gradient(picked, xb))

        self._labels, self._grad_sign = labels, grad_sign

    def _batched(self, fn, *arrays):
        b = self._batch_size
        out = [fn(*(tf.constant(a[i:i + b]) for a in arrays)).numpy() for i in range(0, len(arrays[0]), b)]
        return np.concatenate(out, axis=0)

    def predict(self, images):
        """Substitute labels ``argmax_j F_j(x)``."""
        return self._batched(self._labels, images)

    def jacobian_sign(self, images, labels):
        """``sign(dF_label(x) / dx)`` for every image (the substitute's logit of the oracle label)."""
        return self._batched(self._grad_sign, images, labels)


def _build_substitute(substitute, input_shape, num_classes, learning_rate):
    if substitute is None:
        model = small_cnn(input_shape, num_classes, name="substitute")
    elif isinstance(substitute, keras.Model):
        model = substitute
    elif callable(substitute):
        model = substitute(input_shape, num_classes)
        check_tf_keras_model(model, argument="substitute(input_shape, num_classes)")
    else:
        check_tf_keras_model(substitute, argument="substitute")
    if model.output_shape[-1] != num_classes:
        raise ValueError(f"`substitute` must output {num_classes} logits. "
                         f"Received: substitute output shape {model.output_shape}")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _transfer(attack, model, x, y, eps, attack_kwargs, clip_min, clip_max):
    kwargs = dict(attack_kwargs or {})
    if callable(attack):
        return attack(model, x, y, **kwargs)
    if attack == "fgsm":
        return fgsm(model, x, y, eps=eps, clip_min=clip_min, clip_max=clip_max, **kwargs)
    return pgd(model, x, y, eps=eps, clip_min=clip_min, clip_max=clip_max, **kwargs)


def substitute_attack(oracle, x_initial, x, *, substitute=None, num_classes: int | None = None,
                      rounds: int = 6, lmbda: float = 0.1, tau: int | None = None, epochs: int = 10,
                      batch_size: int = 32, learning_rate: float = 1e-3, attack="fgsm", eps: float = 0.3,
                      attack_kwargs: dict | None = None, clip_min: float = 0.0, clip_max: float = 1.0,
                      oracle_batch_size: int = 256, seed: int | None = None, verbose: int = 0):
    """Train a substitute from oracle labels with Jacobian augmentation, then transfer FGSM/PGD.

    The oracle is only ever asked for labels, on NumPy batches: nothing differentiates through it,
    so it can be a remote API, a TFLite interpreter or any opaque function. If it returns scores
    ``[N, K]``, only their argmax is kept.

    Each round labels the *new* points of ``S_rho`` (so ``|S_0| * 2^(rounds - 1)`` training queries
    in total), trains the substitute for ``epochs`` more epochs on the whole labelled set
    (continuing from the previous round, as the paper's code does), then doubles the set with
    ``x + lambda_rho * sign(J_F(x)[O~(x)])``, clipped to ``[clip_min, clip_max]``. The last round
    does not augment (its points would never be used). Finally the oracle labels ``x``, the
    attack runs on the substitute with those labels (untargeted), and the oracle labels ``x_adv``.

    Args:
      oracle: callable mapping a float32 NumPy batch ``[N, H, W, C]`` to int labels ``[N]`` or
        scores ``[N, K]``.
      x_initial: the attacker's small initial set ``S_0`` ``[M, H, W, C]`` (paper: 150 held-out
        test images), floats in ``[clip_min, clip_max]``.
      x: images to attack ``[N, H, W, C]``.
      substitute: ``None`` (``tfrobust.models.small_cnn``), a builder
        ``(input_shape, num_classes) -> tf_keras model`` or a tf_keras model; it must output logits.
        It is compiled here with Adam and sparse cross-entropy from logits.
      num_classes: number of classes; needed when the oracle returns labels only (inferred from
        scores otherwise).
      rounds: ``max_rho``, substitute training rounds (paper: 6), >= 1.
      lmbda: ``lambda``, the augmentation step (paper: 0.1), > 0.
      tau: period of the sign flip of ``lambda`` (paper: 3), or None for a constant step.
      epochs: training epochs per round (paper: 10), >= 1.
      batch_size: substitute training batch size.
      learning_rate: Adam learning rate of the substitute.
      attack: ``"fgsm"``, ``"pgd"`` (from :mod:`tfrobust.attacks`), or a callable
        ``attack(substitute, x, y, **attack_kwargs) -> x_adv``.
      eps: L-inf budget of the transferred attack (paper: 0.3 on MNIST), > 0.
      attack_kwargs: extra keyword arguments of the attack (for ``"pgd"``: ``steps`` defaults to
        20 and ``step_size`` to ``2.5 * eps / steps``).
      clip_min: lower bound of pixel values.
      clip_max: upper bound of pixel values.
      oracle_batch_size: images per oracle call.
      seed: seeds Python, NumPy and TensorFlow (``keras.utils.set_random_seed``) when given.
      verbose: Keras ``fit`` verbosity.

    Returns:
      :class:`SubstituteResult`.

    Raises:
      TypeError: bad ``oracle``, ``substitute`` or ``attack``; integer images.
      ValueError: bad shapes, NaN/inf images, images outside the box, non-positive ``rounds``,
        ``epochs``, ``lmbda``, ``eps``, bad ``tau``, unknown attack name, missing ``num_classes``
        with a label-only oracle, oracle labels outside ``[0, num_classes)``.

    Example:
      >>> res = substitute_attack(oracle, x_test[:150], x_test[150:1150], num_classes=10)  # doctest: +SKIP
      >>> res.transfer_success_rate, res.oracle_queries  # doctest: +SKIP

    References:
      Papernot et al., Practical Black-Box Attacks against Machine Learning, AsiaCCS 2017,
      https://arxiv.org/abs/1602.02697
    """
    if not callable(oracle):
        raise TypeError(f"`oracle` must be callable. Received: oracle={oracle!r}")
    rounds = V.integer("rounds", rounds, minimum=1)
    epochs = V.integer("epochs", epochs, minimum=1)
    batch_size = V.integer("batch_size", batch_size, minimum=1)
    oracle_batch_size = V.integer("oracle_batch_size", oracle_batch_size, minimum=1)
    lmbda = V.number("lmbda", lmbda, minimum=0.0, open_min=True)
    eps = V.number("eps", eps, minimum=0.0, open_min=True)
    learning_rate = V.number("learning_rate", learning_rate, minimum=0.0, open_min=True)
    if tau is not None:
        tau = V.integer("tau", tau, minimum=1)
    if num_classes is not None:
        num_classes = V.integer("num_classes", num_classes, minimum=2)
    seed = V.seed(seed)
    if not (callable(attack) or attack in ("fgsm", "pgd")):
        raise ValueError(f"`attack` must be 'fgsm', 'pgd' or a callable. Received: attack={attack!r}")
    if attack_kwargs is not None and not isinstance(attack_kwargs, dict):
        raise TypeError(f"`attack_kwargs` must be a dict or None. Received: attack_kwargs={attack_kwargs!r}")
    if (substitute is not None and not isinstance(substitute, keras.Model) and not callable(substitute)):
        check_tf_keras_model(substitute, argument="substitute")
    clip_min, clip_max = V.clip_range(clip_min, clip_max)
    s0, _ = _check_images(x_initial, clip_min, clip_max, name="x_initial")
    x_att, dtype = _check_images(x, clip_min, clip_max)
    if s0.shape[1:] != x_att.shape[1:]:
        raise ValueError("`x_initial` and `x` must hold images of the same shape. Received: "
                         f"x_initial.shape={s0.shape}, x.shape={x_att.shape}")
    if seed is not None:
        keras.utils.set_random_seed(seed)

    query = _LabelOracle(oracle, oracle_batch_size)
    data = s0
    labels = query(data)
    num_classes = num_classes or query.num_classes
    if num_classes is None:
        raise ValueError("`num_classes` is required when the oracle returns labels only. "
                         "Received: num_classes=None")
    model = _build_substitute(substitute, s0.shape[1:], num_classes, learning_rate)

    ops = _SubstituteOps(model)
    history = []
    for rho in range(rounds):
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"`oracle` labels must lie in [0, num_classes={num_classes}). Received: "
                             f"labels in [{labels.min()}, {labels.max()}]")
        ds = tf.data.Dataset.from_tensor_slices((data, labels)).shuffle(
            len(data), seed=None if seed is None else seed + rho).batch(batch_size)
        model.fit(ds, epochs=epochs, verbose=verbose)
        lam = lmbda * (-1.0) ** (rho // tau) if tau is not None else lmbda
        pred = ops.predict(data)
        history.append({"round": rho, "lambda": lam, "train_size": int(len(data)),
                        "train_agreement": float(np.mean(pred == labels))})
        if rho == rounds - 1:
            break
        new = np.clip(data + lam * ops.jacobian_sign(data, labels), clip_min, clip_max)
        new = new.astype(np.float32)
        data = np.concatenate([data, new], axis=0)
        labels = np.concatenate([labels, query(new)], axis=0)
    training_queries = query.queries

    y_oracle = query(x_att)
    sub_pred = ops.predict(x_att)
    x_adv = _transfer(attack, model, tf.constant(x_att), tf.constant(y_oracle.astype(np.int32)), eps,
                      attack_kwargs, clip_min, clip_max)
    x_adv = np.clip(np.asarray(x_adv, dtype=np.float32), clip_min, clip_max)
    y_adv = query(x_adv)

    attack_name = attack if isinstance(attack, str) else getattr(attack, "__name__", type(attack).__name__)
    config = {"rounds": rounds, "lmbda": lmbda, "tau": tau, "epochs": epochs, "batch_size": batch_size,
              "learning_rate": learning_rate, "attack": attack_name,
              "eps": eps, "attack_kwargs": {k: v for k, v in (attack_kwargs or {}).items()
                                            if isinstance(v, (numbers.Number, str, bool, type(None)))},
              "clip_min": clip_min, "clip_max": clip_max, "initial_size": int(len(s0)),
              "num_classes": num_classes, "seed": seed, "substitute": model.name}
    return SubstituteResult(
        x_adv=_as_output(x_adv, dtype, x, np.ones(len(x_adv), bool)),
        substitute=model,
        oracle_queries=query.queries,
        training_queries=training_queries,
        substitute_agreement=float(np.mean(sub_pred == y_oracle)),
        transfer_success_rate=float(np.mean(y_adv != y_oracle)),
        oracle_labels=y_oracle,
        adversarial_labels=y_adv,
        history=history,
        config=config,
    )
