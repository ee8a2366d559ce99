"""``tfrobust lottery``: lottery tickets by iterative magnitude pruning; ``lottery.json`` + ``.md``.

Trains ``--arch`` (or a saved ``--model``, whose current weights are taken as the initialisation
theta_0), prunes ``prune_rate`` of the surviving weights per round, rewinds and retrains, and
compares each ticket with random re-initialisations of the same mask (Scratch-E, Scratch-B)
(:func:`tfrobust.compression.lottery_ticket`).
Python: ``run(Config(out="runs/lt", train_subset=1000, rounds=1))`` returns the result dict.
"""

from __future__ import annotations

import dataclasses

from tfrobust import _validate as V
from tfrobust import compression, models, utils
from tfrobust.cli import _common
from tfrobust.cli import _flags as F
from tfrobust.cli._flags import setting


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Settings of ``tfrobust lottery`` (each is also a flag of the same name); the paper's defaults."""

    out: str = setting(help="Output folder (lottery.json, lottery.md).")
    model: str | None = setting(None, "Saved model whose weights are theta_0 (.keras/.h5); unset: --arch.")
    arch: str = setting("lenet_300_100", "Architecture from tfrobust.models when --model is unset "
                        "(the paper's LeNet-300-100).", choices=models.names())
    dataset: str = setting("fashion_mnist", "Dataset.", choices=_common.DATASETS)
    data_dir: str | None = setting(None, "Folder searched first for the dataset's IDX files.")
    train_subset: int | None = setting(10000, "Use the first N training images (unset: all).")
    test_subset: int | None = setting(1000, "Evaluate on the first N test images (unset: all).")
    rounds: int = setting(3, "Pruning rounds (hidden-layer density after r rounds: (1 - p)^r).")
    prune_rate: float = setting(0.2, "Fraction p of surviving weights removed per round (output layer p/2).")
    epochs: int = setting(2, "Epochs of the dense net, of every ticket and of Scratch-E.")
    rewind_steps: int = setting(0, "Rewind to the weights after this many steps (0: to theta_0).")
    scratch: bool = setting(True, "Also train the random re-initialisation baselines.")
    batch_size: int = setting(128, "Training batch size.")
    lr: float = setting(1e-3, "Adam learning rate.")
    seed: int = setting(0, "Seed of shuffling and of the re-initialisations.")

    def __post_init__(self):
        _common.check_common(self)
        V.fraction("prune_rate", self.prune_rate, open_min=True, open_max=True)
        V.integer("rewind_steps", self.rewind_steps, minimum=0)


def run(config: Config) -> dict:
    """Run IMP with rewinding and the baselines; write ``lottery.json`` and ``lottery.md`` into ``out``."""
    utils.set_seed(config.seed)
    x, y = _common.load_split(config, "train", config.train_subset)
    x_test, y_test = _common.load_split(config, "test", config.test_subset)
    model, _ = _common.trainable_model(config, x.shape[1:])
    res = compression.lottery_ticket(
        model, x, y, x_test, y_test, rounds=config.rounds, prune_rate=config.prune_rate, epochs=config.epochs,
        rewind_steps=config.rewind_steps, lr=config.lr, batch_size=config.batch_size, scratch=config.scratch,
        seed=config.seed)
    table = utils.markdown_table(
        ["round", "weights kept", "ticket (rewound)", "random re-init, same epochs (Scratch-E)",
         "random re-init, Scratch-B", "Scratch-B epochs"],
        [[r["round"], f"{1 - r['sparsity']:.1%}", r["ticket"], r.get("scratch_e"), r.get("scratch_b"),
          r.get("scratch_b_epochs")] for r in res.rows])
    last = res.rows[-1]
    print(f"round {last['round']}: {1 - last['sparsity']:.1%} of the weights kept, ticket accuracy "
          f"{last['ticket']:.4f}")
    result = {**res.to_dict(), "model": config.model, "arch": None if config.model else config.arch,
              "dataset": config.dataset, "settings": F.describe(config)}
    title = f"### Lottery tickets ({config.dataset}, {len(x_test)} test images)"
    return _common.write_report(config.out, "lottery", result, f"{title}\n\n{table}")


def main(argv=None) -> int:
    """absl layer: the parsed flags become a :class:`Config`."""
    del argv
    run(F.from_flags(Config))
    return 0
