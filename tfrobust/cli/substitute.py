"""``tfrobust substitute``: Papernot et al.'s black-box substitute attack; ``substitute.json`` + ``.md``.

The saved model is the oracle and is asked for labels only (a ``.tflite`` file works): a substitute
is trained from the first ``initial_size`` test images with Jacobian augmentation, FGSM/PGD runs on
it, and the examples transfer to the oracle. Python:
``run(Config(model="m.keras", out="runs/sub", rounds=2, epochs=1))`` returns the result dict.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfrobust import _validate as V
from tfrobust import attacks, models
from tfrobust.cli import _common
from tfrobust.cli import _flags as F
from tfrobust.cli._flags import setting


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Settings of ``tfrobust substitute`` (each is also a flag of the same name); paper defaults."""

    model: str = setting(help="The oracle: .keras, .h5, a SavedModel folder or a .tflite file.")
    out: str = setting(help="Output folder (substitute.json, substitute.md).")
    dataset: str = setting("fashion_mnist", "Dataset (its test split).", choices=_common.DATASETS)
    data_dir: str | None = setting(None, "Folder searched first for the dataset's IDX files.")
    initial_size: int = setting(150, "S_0: the attacker's first test images (paper: 150).")
    num_examples: int = setting(1000, "Attack the N test images after S_0.")
    arch: str = setting("small_cnn", "Substitute architecture from tfrobust.models.", choices=models.names())
    rounds: int = setting(6, "Substitute training rounds (paper: 6).")
    lmbda: float = setting(0.1, "Jacobian augmentation step lambda (paper: 0.1).")
    tau: int | None = setting(None, "Period of lambda's sign flip (paper: 3); unset = constant lambda.")
    epochs: int = setting(10, "Substitute epochs per round (paper: 10).")
    batch_size: int = setting(32, "Substitute training batch size.")
    lr: float = setting(1e-3, "Substitute Adam learning rate.")
    attack: str = setting("fgsm", "Attack crafted on the substitute.", choices=("fgsm", "pgd"))
    eps: float = setting(0.3, "L-inf radius of the transferred attack (paper: 0.3 on MNIST).")
    steps: int = setting(20, "PGD steps (--attack=pgd).")
    seed: int = setting(0, "Seed of Python, NumPy and TensorFlow.")

    def __post_init__(self):
        _common.check_common(self)
        V.integer("initial_size", self.initial_size, minimum=1)
        V.number("lmbda", self.lmbda, minimum=0.0, open_min=True)
        V.integer("steps", self.steps, minimum=1)
        if self.tau is not None:
            V.integer("tau", self.tau, minimum=1)


def run(config: Config) -> dict:
    """Train the substitute, transfer the attack; write ``substitute.json`` and ``.md`` into ``out``."""
    oracle = _common.oracle_fn(config.model)
    x, y = _common.load_split(config, "test", config.initial_size + config.num_examples)
    x0, x_att, y_att = x[:config.initial_size], x[config.initial_size:], y[config.initial_size:]
    if len(x_att) == 0:
        raise ValueError("the test split holds no image after S_0. "
                         f"Received: initial_size={config.initial_size}")

    def build(shape, k):
        return models.get(config.arch, input_shape=tuple(shape), num_classes=k)

    res = attacks.substitute_attack(
        oracle, x0, x_att, substitute=build,
        rounds=config.rounds, lmbda=config.lmbda, tau=config.tau, epochs=config.epochs,
        batch_size=config.batch_size, learning_rate=config.lr, attack=config.attack, eps=config.eps,
        attack_kwargs={"steps": config.steps} if config.attack == "pgd" else None, seed=config.seed)
    summary = _common.attack_summary(oracle, x_att, y_att, np.asarray(res.x_adv))
    result = {**summary, **res.to_dict(), "attack": "substitute", "model": config.model,
              "dataset": config.dataset, "config": F.describe(config)}
    settings = (f"{config.arch} substitute, {config.rounds} rounds x {config.epochs} epochs, "
                f"{config.attack} eps={config.eps:g}, {res.oracle_queries} oracle queries")
    table = _common.summary_markdown("Substitute black-box attack (Papernot et al.)", summary, settings)
    table += (f"\nSubstitute agreement with the oracle: {res.substitute_agreement:.4f}; "
              f"transfer success rate (oracle label changed): {res.transfer_success_rate:.4f}.\n")
    print(f"transfer success rate: {res.transfer_success_rate:.4f}, substitute agreement: "
          f"{res.substitute_agreement:.4f} ({res.oracle_queries} oracle queries)")
    return _common.write_report(config.out, "substitute", result, table)


def main(argv=None) -> int:
    """absl layer: the parsed flags become a :class:`Config`."""
    del argv
    run(F.from_flags(Config))
    return 0
