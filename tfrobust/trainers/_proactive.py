"""Round-based retraining loops around ``fit``: proactive defense and feedback learning.

Both loops checkpoint after every round (model weights, optimizer state and the report so far)
into ``directory``; calling :meth:`run` again with the same directory resumes after the last
finished round.

Both take a compiled model, a compiled trainer, or a label-conditioned ``(train_model, model)``
pair (CAS, CIFS, PCL), which they fit through :class:`~tfrobust.trainers.Trainer`'s pair
mechanism: the attacks and the measurements run on the inference model ``model``, and ``fit``
computes the loss on the training path ``train_model([x, y])`` with the layers' own ``add_loss``
terms of that batch (which holds the round's adversarial examples).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrobust import _validate as V
from tfrobust import attacks
from tfrobust._keras import check_keras_model, flavour, for_keras3, keras, keras3
from tfrobust.data import as_tf_dataset
from tfrobust.evaluation import (
    accuracy_under,
    attack_dataset,
    inequality,
    minimal_perturbation,
    per_class_accuracy,
)
from tfrobust.trainers._base import Trainer
from tfrobust.utils import atomic_write_json

# ----------------------------------------------------------------------------- attacks


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """A named L-inf attack configuration callable as ``spec(model_fn, x, y) -> x_adv``.

    A thin front of the attack table (:func:`tfrobust.attacks.get`) for the training loops:
    ``name`` is ``"fgsm"`` or ``"pgd"``; PGD uses ``steps`` steps of ``step_size`` (None: the
    table's default ``2.5 * eps / steps``) from a uniform random start.
    """

    name: str
    eps: float
    steps: int = 10
    step_size: float | None = None

    def __post_init__(self):
        V.choice("name", self.name, ("fgsm", "pgd"))
        V.integer("steps", self.steps, minimum=1)
        self.attack  # noqa: B018 -- builds the configured attack: the table validates eps / step_size

    @property
    def attack(self) -> attacks.Attack:
        """The configured attack from :func:`tfrobust.attacks.get`."""
        if self.name == "fgsm":
            return attacks.get("fgsm", eps=self.eps)
        return attacks.get("pgd", eps=self.eps, steps=self.steps, step_size=self.step_size)

    def __call__(self, model_fn, x, y):
        return self.attack(model_fn, x, y)

    def describe(self) -> str:
        if self.name == "fgsm":
            return f"FGSM eps={self.eps:g}"
        return f"PGD-{self.steps} eps={self.eps:g} step={self.attack.effective_step_size:.4g}"


def _as_attack(value, argument):
    if isinstance(value, AttackSpec):
        return value
    if isinstance(value, dict):
        return AttackSpec(**value)
    raise TypeError(f"`{argument}` must be an AttackSpec or a dict of its fields. "
                    f"Received: {argument}={value!r}")


# ----------------------------------------------------------------------------- checkpointing


def _fit_target(model):
    """What the loop fits: ``model`` itself (compiled), or a compiled Trainer around a pair.

    A ``(train_model, model)`` pair becomes ``Trainer((train_model, model))`` (its pair checks,
    training path and ``add_loss`` terms), compiled with the settings of whichever of the two
    models is compiled (the inference model's when both are): its optimizer object, its loss and
    its metrics, read through Keras' public ``get_compile_config``.
    """
    if not isinstance(model, (tuple, list)):
        check_keras_model(model)
        if getattr(model, "optimizer", None) is None:
            raise ValueError("`model` must be compiled (it is trained with fit). "
                             "Received: an uncompiled model")
        return model
    trainer = Trainer(model)  # checks the pair: two models, [x, y] training inputs, shared weights
    compiled = [m for m in (trainer.model, trainer.train_model) if getattr(m, "optimizer", None) is not None]
    if not compiled:
        raise ValueError("`model` must be compiled (it is trained with fit): compile the pair's "
                         "inference model (or its training model) with the optimizer, loss and "
                         "metrics to train with. Received: a (train_model, model) pair, neither compiled")
    source = compiled[0]
    saving = (keras3 if flavour(source) == "keras3" else keras).saving
    config = saving.deserialize_keras_object(source.get_compile_config())
    config.update(optimizer=source.optimizer, loss=source.loss)
    trainer.compile(**config)
    return trainer


class _RoundLoop:
    """Per-round checkpoint (weights + optimizer) and JSON state, resumable."""

    kind = "rounds"

    def __init__(self, model, *, rounds, epochs_per_round, batch_size, directory, seed, verbose,
                 callbacks=None):
        model = _fit_target(model)
        self.model = model
        self.rounds = V.integer("rounds", rounds, minimum=1)
        self.epochs_per_round = V.integer("epochs_per_round", epochs_per_round, minimum=1)
        self.batch_size = V.integer("batch_size", batch_size, minimum=1)
        self.seed = V.integer("seed", seed, minimum=0)
        if callbacks is not None and not isinstance(callbacks, (list, tuple)):
            raise TypeError("`callbacks` must be a list of Keras callbacks. "
                            f"Received: callbacks={callbacks!r}")
        self.callbacks = list(callbacks or ())
        self.verbose = verbose
        self.directory = None if directory is None else Path(directory)
        self._ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
        self._manager = None
        if self.directory is not None:
            self._manager = tf.train.CheckpointManager(self._ckpt, str(self.directory / "ckpt"),
                                                       max_to_keep=2)

    @property
    def inner(self):
        """The model that is saved/deployed (a trainer's wrapped model, else the model itself)."""
        # A Keras 3 model's trainer is Trainer's Keras 3 twin, a class of its own (not a subclass).
        return self.model.model if isinstance(self.model, (Trainer, for_keras3(Trainer))) else self.model

    def _state_path(self):
        return self.directory / "state.json"

    def _load(self) -> dict | None:
        if self._manager is None or not self._state_path().exists():
            return None
        state = json.loads(self._state_path().read_text())
        if state.get("kind") != self.kind:
            raise ValueError(f"`directory` holds a {state.get('kind')!r} run, not {self.kind!r}. "
                             f"Received: directory={str(self.directory)!r}")
        ckpt = state.get("checkpoint")
        if ckpt is None:
            return None
        self._ckpt.restore(ckpt).expect_partial()
        return state

    def _save(self, state: dict) -> None:
        if self._manager is None:
            return
        # Checkpoint first, then the state that points at it: a crash in between leaves the
        # previous (consistent) state in place.
        state["checkpoint"] = self._manager.save()
        state["kind"] = self.kind
        atomic_write_json(self._state_path(), state)

    def _fit(self, x, y, round_index):
        ds = as_tf_dataset(x, y, batch_size=self.batch_size, shuffle=True, seed=self.seed + round_index)
        hist = self.model.fit(ds, epochs=self.epochs_per_round, verbose=self.verbose,
                              callbacks=self.callbacks)
        return float(hist.history["loss"][-1])


# ----------------------------------------------------------------------------- proactive defense


class ProactiveDefense(_RoundLoop):
    """Find the model's holes with attack A and patch them, round after round (design note 001).

    ::

        train on X
        for t = 1..T:
            X'_t = {(A(x_n), y_n)}  for every training example (attack A on the current model)
            retrain on X + X'_t      (adversarial examples keep their true labels)
            report clean accuracy, accuracy under A, and under an attack B never used in training

    Retraining changes the model, so new holes appear: that is why the loop repeats. The report
    shows whether robustness carries over to the unseen attack B.

    Label-conditioned defenses (CAS, CIFS, PCL) are passed as their ``(train_model, model)`` pair
    (``defended_cnn(defense, return_train_model=True)``, ``layers.label_conditioned_pair``), as
    to :class:`AdversarialTrainer`: attacks A and B run on the inference model ``model`` (what an
    attacker faces; it is also what :attr:`inner` returns, what the checkpoint restores and what
    to save), and each round fits ``Trainer((train_model, model))``, whose loss on a batch of
    ``X + X'_t`` is the compiled loss of ``train_model([x, y])`` (true-label mask) plus the
    layers' ``add_loss`` terms of that batch: CAS ``beta * L_CAS``, CIFS the probe's
    cross-entropy, PCL the prototype-conformity term, computed on the adversarial examples of the
    batch as on its clean ones.

    Args:
      model: a *compiled* Keras 3 or tf_keras model or trainer (trained with ``fit``), or a
        ``(train_model, model)`` pair of which one model is compiled (its optimizer, loss and
        metrics train the pair; the inference model's win when both are compiled).
      attack: attack A (:class:`AttackSpec` or dict), used to augment the training set.
      holdout_attack: attack B (never used for training), only evaluated.
      rounds: T.
      epochs_per_round: ``fit`` epochs per round (and for the initial training).
      batch_size: training batch size.
      attack_batch_size: batch size when attacking the training/test sets.
      directory: checkpoint folder (None: no checkpoints); rerunning resumes.
      pretrained: skip the initial training on X (the model is already trained).
      seed: shuffle seed.
      verbose: ``fit`` verbosity.
      callbacks: Keras callbacks (of the model's Keras) passed to every ``fit`` of the loop.

    Example:
      >>> loop = ProactiveDefense(model, attack=AttackSpec("fgsm", eps=0.1),  # doctest: +SKIP
      ...                         holdout_attack=AttackSpec("pgd", eps=0.1), rounds=3, directory="run")
      >>> report = loop.run(x_train, y_train, x_test, y_test)  # doctest: +SKIP
      >>> train_model, model = defended_cnn("cas", return_train_model=True)  # doctest: +SKIP
      >>> model.compile("adam", SparseCategoricalCrossentropy(from_logits=True))  # doctest: +SKIP
      >>> loop = ProactiveDefense((train_model, model), attack=..., holdout_attack=...)  # doctest: +SKIP
      >>> loop.run(x_train, y_train, x_test, y_test); loop.inner.save("cas.keras")  # doctest: +SKIP
    """

    kind = "proactive"

    def __init__(self, model, *, attack, holdout_attack, rounds: int = 3, epochs_per_round: int = 1,
                 batch_size: int = 128, attack_batch_size: int = 256, directory=None,
                 pretrained: bool = False, seed: int = 0, verbose=0, callbacks=None):
        super().__init__(model, rounds=rounds, epochs_per_round=epochs_per_round, batch_size=batch_size,
                         directory=directory, seed=seed, verbose=verbose, callbacks=callbacks)
        self.attack = _as_attack(attack, "attack")
        self.holdout_attack = _as_attack(holdout_attack, "holdout_attack")
        self.attack_batch_size = attack_batch_size
        self.pretrained = bool(pretrained)

    def _measure(self, t, x_test, y_test, train_loss, seconds):
        m = self.inner
        return {
            "round": t,
            "train_loss": train_loss,
            "clean_accuracy": accuracy_under(None, m, x_test, y_test),
            "attack_accuracy": accuracy_under(self.attack, m, x_test, y_test,
                                              batch_size=self.attack_batch_size),
            "holdout_accuracy": accuracy_under(self.holdout_attack, m, x_test, y_test,
                                               batch_size=self.attack_batch_size),
            "seconds": round(seconds, 2),
        }

    def run(self, x, y, x_test, y_test) -> dict:
        """Run (or resume) the loop; returns ``{"attack", "holdout_attack", "rounds": [rows]}``.

        Row ``round = 0`` is the model before any adversarial round.
        """
        state = self._load() or {"rows": [], "next_round": 0}
        for t in range(state["next_round"], self.rounds + 1):
            start = time.perf_counter()
            loss = None
            if t == 0:
                if not self.pretrained:
                    loss = self._fit(x, y, 0)
            else:
                x_adv = attack_dataset(self.attack, self.inner, x, y, batch_size=self.attack_batch_size)
                loss = self._fit(np.concatenate([x, x_adv]), np.concatenate([y, y]), t)
            state["rows"].append(self._measure(t, x_test, y_test, loss, time.perf_counter() - start))
            state["next_round"] = t + 1
            self._save(state)
        return {"attack": self.attack.describe(), "holdout_attack": self.holdout_attack.describe(),
                "rounds": state["rows"]}


# ----------------------------------------------------------------------------- feedback learning


class FeedbackLearning(_RoundLoop):
    """Feedback learning: measure per-class robustness, then generate adversarial examples by weakness.

    Each round:

    1. measure each class's robustness in decision space: ``d_c``, the mean minimal L-inf
       perturbation that flips the examples of class ``c``
       (:func:`tfrobust.evaluation.minimal_perturbation`, on a probe set of training examples);
    2. class-proportion compensation: generate ``n_c = budget * w_c / sum(w)`` adversarial
       examples from class ``c`` with ``w_c = 1 / max(d_c, eps_max / 100)`` (weaker classes get
       more; ``proportional=False`` gives every class ``budget / K``, the uniform baseline);
    3. retrain on the training set plus those examples (true labels);
    4. report per-class robust accuracy (the evaluation attack on the test set), per-class
       ``d_c``, and the inequality (:func:`tfrobust.evaluation.inequality`) of per-class robust
       accuracy.

    Args:
      model: a compiled Keras 3 or tf_keras model or trainer, or a label-conditioned
        ``(train_model, model)`` pair (as :class:`ProactiveDefense`).
      attack: the attack that generates training examples (:class:`AttackSpec`/dict).
      eval_attack: the attack of the per-class robust accuracy (default: ``attack``).
      eps_max: largest radius of the distance search.
      distance: ``"fgsm"`` (exact bisection along the FGSM direction) or ``"pgd"`` (grid).
      rounds, epochs_per_round, batch_size, directory, seed, verbose, callbacks: as
        :class:`ProactiveDefense`.
      budget: adversarial examples per round (default: the training set size).
      probe_size: training examples per class used to measure ``d_c``.
      proportional: class-proportion compensation on (True) or uniform (False).
      pretrained: skip the initial training on X.
      num_classes: K (default: inferred from the labels).

    References:
      Feedback learning for improving the robustness of neural networks, arXiv:1909.05443,
      https://arxiv.org/abs/1909.05443
    """

    kind = "feedback"

    def __init__(self, model, *, attack, eval_attack=None, eps_max: float = 0.2, distance: str = "fgsm",
                 rounds: int = 2, epochs_per_round: int = 1, batch_size: int = 128, budget: int | None = None,
                 probe_size: int = 100, proportional: bool = True, directory=None, pretrained: bool = False,
                 num_classes: int | None = None, attack_batch_size: int = 256, seed: int = 0, verbose=0,
                 callbacks=None):
        super().__init__(model, rounds=rounds, epochs_per_round=epochs_per_round, batch_size=batch_size,
                         directory=directory, seed=seed, verbose=verbose, callbacks=callbacks)
        self.attack = _as_attack(attack, "attack")
        self.eval_attack = self.attack if eval_attack is None else _as_attack(eval_attack, "eval_attack")
        V.choice("distance", distance, ("fgsm", "pgd"))
        V.number("eps_max", eps_max, minimum=0.0, open_min=True)
        if budget is not None:
            V.integer("budget", budget, minimum=1)
        V.integer("probe_size", probe_size, minimum=1)
        self.eps_max = float(eps_max)
        self.distance = distance
        self.budget = budget
        self.probe_size = probe_size
        self.proportional = bool(proportional)
        self.pretrained = bool(pretrained)
        self.num_classes = num_classes
        self.attack_batch_size = attack_batch_size

    def class_distances(self, x, y, num_classes) -> np.ndarray:
        """``d_c`` for every class, measured on up to ``probe_size`` examples per class."""
        rng = np.random.default_rng(self.seed)
        d = np.zeros(num_classes)
        for c in range(num_classes):
            idx = np.flatnonzero(y == c)
            if len(idx) == 0:
                d[c] = self.eps_max
                continue
            idx = rng.choice(idx, size=min(self.probe_size, len(idx)), replace=False)
            d[c] = minimal_perturbation(self.inner, x[idx], y[idx], eps_max=self.eps_max,
                                        method=self.distance, batch_size=self.attack_batch_size).mean()
        return d

    def allocation(self, distances, budget) -> np.ndarray:
        """Adversarial examples per class for a round (sums to ``budget``)."""
        k = len(distances)
        if self.proportional:
            w = 1.0 / np.maximum(np.asarray(distances, np.float64), self.eps_max / 100)
        else:
            w = np.ones(k)
        share = budget * w / w.sum()
        n = np.floor(share).astype(int)
        n[np.argsort(-(share - n))[: budget - n.sum()]] += 1  # largest remainders
        return n

    def per_class_accuracy(self, attack, x, y, num_classes):
        """``(overall accuracy, [accuracy of class c])`` on ``attack``'s examples (clean when None)."""
        return per_class_accuracy(attack, self.inner, x, y, num_classes,
                                  batch_size=self.attack_batch_size)

    def _measure(self, t, x, y, x_test, y_test, k, loss, alloc, seconds):
        robust_all, robust = self.per_class_accuracy(self.eval_attack, x_test, y_test, k)
        clean_all, clean = self.per_class_accuracy(None, x_test, y_test, k)
        dist = self.class_distances(x, y, k)
        return {
            "round": t,
            "train_loss": loss,
            "clean_accuracy": clean_all,
            "robust_accuracy": robust_all,
            "per_class_clean": clean,
            "per_class_robust": robust,
            "per_class_distance": dist.tolist(),
            "allocation": None if alloc is None else [int(v) for v in alloc],
            "inequality_robust": inequality(robust),
            "inequality_distance": inequality(dist),
            "seconds": round(seconds, 2),
        }

    def run(self, x, y, x_test, y_test) -> dict:
        """Run (or resume); returns ``{"attack", "eval_attack", "proportional", "rounds": [rows]}``."""
        y = np.asarray(y).astype(np.int64)
        y_test = np.asarray(y_test).astype(np.int64)
        k = self.num_classes or int(max(y.max(), y_test.max()) + 1)
        budget = self.budget or len(x)
        state = self._load() or {"rows": [], "next_round": 0}
        for t in range(state["next_round"], self.rounds + 1):
            start = time.perf_counter()
            loss, alloc = None, None
            if t == 0:
                if not self.pretrained:
                    loss = self._fit(x, y, 0)
            else:
                rng = np.random.default_rng([self.seed + 1, t])
                alloc = self.allocation(state["rows"][-1]["per_class_distance"], budget)
                picks = np.concatenate([
                    rng.choice(np.flatnonzero(y == c), size=n, replace=n > np.sum(y == c))
                    for c, n in enumerate(alloc) if n > 0 and np.any(y == c)]).astype(np.int64)
                x_adv = attack_dataset(self.attack, self.inner, x[picks], y[picks],
                                       batch_size=self.attack_batch_size)
                loss = self._fit(np.concatenate([x, x_adv]), np.concatenate([y, y[picks]]), t)
            state["rows"].append(self._measure(t, x, y, x_test, y_test, k, loss, alloc,
                                               time.perf_counter() - start))
            state["next_round"] = t + 1
            self._save(state)
        return {"attack": self.attack.describe(), "eval_attack": self.eval_attack.describe(),
                "proportional": self.proportional, "distance": self.distance, "eps_max": self.eps_max,
                "rounds": state["rows"]}
