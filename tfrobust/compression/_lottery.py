"""Lottery tickets: iterative magnitude pruning with rewinding, against random re-initialisation.

Iterative magnitude pruning (IMP): train the dense net from ``theta_0``; for each round, remove
the ``p`` fraction of the *surviving* weights with the smallest ``|w|`` (per layer; the output
layer at ``p / 2``, as in the paper), reset the survivors to ``theta_k`` (``k = 0``: the original
initialisation; ``k > 0``: the weights after ``k`` training steps, "late rewinding") and train
again with the mask fixed. The ticket is compared, at the same sparsity and mask, with

- **random re-init**: the same sparse architecture from a fresh random initialisation, trained for
  the same epochs (Liu et al.'s *Scratch-E*), and
- **Scratch-B**: the same, trained for more epochs, ``ceil(E * min(2, 1 / density))`` -- the same
  computation budget as the dense training, capped at twice the epochs as in Liu et al.

References:
  Frankle & Carbin, The Lottery Ticket Hypothesis, ICLR 2019, https://arxiv.org/abs/1803.03635
  Frankle et al., Stabilizing the Lottery Ticket Hypothesis (rewinding), 2019,
  https://arxiv.org/abs/1903.01611
  Liu et al., Rethinking the Value of Network Pruning, ICLR 2019, https://arxiv.org/abs/1810.05270
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from tfrobust import _validate as V
from tfrobust._keras import check_tf_keras_model, keras
from tfrobust.compression._masks import MaskCallback, kernel_layers, magnitude_masks, mask_sparsity
from tfrobust.data import as_tf_dataset
from tfrobust.utils import markdown_table, set_seed

__all__ = ["LotteryResult", "lottery_ticket"]


@dataclasses.dataclass
class LotteryResult:
    """One row per pruning round (round 0 is the dense network)."""

    rows: list[dict]
    config: dict

    def to_dict(self) -> dict:
        return {"rows": self.rows, "config": self.config}

    def to_markdown(self) -> str:
        rows = [["0 (dense)", "100.0%", f"{r['ticket']:.4f}", "-", "-"] if r["round"] == 0 else
                [r["round"], f"{1 - r['sparsity']:.1%}", f"{r['ticket']:.4f}", f"{r['scratch_e']:.4f}",
                 f"{r['scratch_b']:.4f} ({r['scratch_b_epochs']})"] for r in self.rows]
        headers = ["round", "weights kept", "ticket (rewound)", "random re-init, same epochs (Scratch-E)",
                   "random re-init, Scratch-B (epochs)"]
        return markdown_table(headers, rows) + "\n"


def _fresh(model, seed):
    set_seed(seed)
    clone = keras.models.clone_model(model)  # new layers -> newly drawn initial weights
    return clone


def _train(model, masks, ds, epochs, lr):
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    callbacks = [MaskCallback(masks)] if masks else []
    model.fit(ds, epochs=epochs, callbacks=callbacks, verbose=0)


def _accuracy(model, x, y, batch_size=512):
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(logits, 1) == y))


def lottery_ticket(model, x, y, x_test, y_test, *, rounds: int = 3, prune_rate: float = 0.2,
                   epochs: int = 2, rewind_steps: int = 0, lr: float = 1e-3, batch_size: int = 128,
                   scratch: bool = True, seed: int = 0) -> LotteryResult:
    """Run IMP with rewinding and the re-initialisation baselines.

    Args:
      model: an *untrained* tf_keras logits model; its current weights are ``theta_0``.
      x, y, x_test, y_test: training and test data.
      rounds: pruning rounds (sparsity after round r: ``1 - (1 - p)^r`` for hidden layers).
      prune_rate: fraction ``p`` of surviving weights removed per round (output layer ``p / 2``).
      epochs: training epochs of the dense net, of every ticket and of Scratch-E.
      rewind_steps: rewind to the weights after this many training steps (0: to the init).
      lr, batch_size: Adam learning rate and batch size.
      scratch: also train the random re-initialisation baselines.
      seed: seed of shuffling and of the re-initialisations.

    Returns:
      :class:`LotteryResult` with test accuracies per round.
    """
    check_tf_keras_model(model)
    for name, v in (("rounds", rounds), ("epochs", epochs), ("batch_size", batch_size)):
        V.integer(name, v, minimum=1)
    V.integer("rewind_steps", rewind_steps, minimum=0)
    if not isinstance(prune_rate, (int, float)) or not 0.0 < prune_rate < 1.0:
        raise ValueError(f"`prune_rate` must be in (0, 1). Received: prune_rate={prune_rate!r}")
    ds = as_tf_dataset(x, y, batch_size=batch_size, shuffle=True, seed=seed)
    work = _fresh(model, seed)
    work.set_weights(model.get_weights())
    if rewind_steps:
        _train(work, {}, ds.repeat().take(rewind_steps), 1, lr)
    rewind = work.get_weights()
    _train(work, {}, ds, epochs, lr)
    rows = [{"round": 0, "sparsity": 0.0, "ticket": _accuracy(work, x_test, y_test)}]
    names = [layer.name for layer in kernel_layers(work)]
    rates = {n: prune_rate for n in names}
    if names:
        rates[names[-1]] = prune_rate / 2
    masks = {}
    for r in range(1, rounds + 1):
        masks = magnitude_masks(work, rates, previous=masks, of_remaining=True)
        work.set_weights(rewind)
        _train(work, masks, ds, epochs, lr)
        row = {"round": r, "sparsity": mask_sparsity(masks), "ticket": _accuracy(work, x_test, y_test)}
        if scratch:
            density = 1.0 - row["sparsity"]
            scratch_b_epochs = math.ceil(epochs * min(2.0, 1.0 / density))
            for key, n_epochs in (("scratch_e", epochs), ("scratch_b", scratch_b_epochs)):
                fresh = _fresh(model, seed + 1000 + r)
                _train(fresh, masks, ds, n_epochs, lr)
                row[key] = _accuracy(fresh, x_test, y_test)
            row["scratch_b_epochs"] = scratch_b_epochs
        rows.append(row)
    config = {"rounds": rounds, "prune_rate": prune_rate, "epochs": epochs, "rewind_steps": rewind_steps,
              "lr": lr, "batch_size": batch_size, "seed": seed, "train_examples": int(len(x)),
              "test_examples": int(len(x_test))}
    return LotteryResult(rows, config)
