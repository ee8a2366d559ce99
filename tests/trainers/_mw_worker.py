"""One worker of a two-process ``MultiWorkerMirroredStrategy`` run (used by test_multiworker.py).

Run as a script with ``TF_CONFIG`` set (the cluster and this worker's index) exactly as on real
machines; ``--out`` receives the weights after every epoch (``weights_e{epoch}_w{task}.npz``,
written after BackupAndRestore saved that epoch) and, at the end, ``result_w{task}.json``.
``--stop_at_step=S`` makes the worker write ``stopped_w{task}`` after optimizer step S and then
wait to be killed (SIGKILL from the test): the kill then lands at a known point, mid-epoch, after
the last backup, so the test is deterministic.

Imported (not run), the module gives the test the same data, model and training loop for the
one-process reference run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfrobust import models, utils  # noqa: E402
from tfrobust._keras import keras  # noqa: E402
from tfrobust.trainers import AdversarialTrainer  # noqa: E402

SEED = 0
EXAMPLES = 32
GLOBAL_BATCH = 16  # 8 per worker
EPOCHS = 3  # 2 steps per epoch
WAIT_TO_BE_KILLED_S = 120  # a stopped worker exits by itself if the test never kills it


def dataset():
    """32 fixed synthetic images in global batches of 16, sharded by data across the workers.

    DATA sharding of a batched dataset gives worker i the i-th half of every global batch, so a
    step sees the same 16 examples as the one-process run.
    """
    rng = np.random.default_rng(SEED)
    x = rng.uniform(0.0, 1.0, (EXAMPLES, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, EXAMPLES).astype(np.int64)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH).with_options(options)


def build(strategy):
    with strategy.scope():
        utils.set_seed(SEED)
        trainer = AdversarialTrainer(models.small_cnn(width=4, dense_units=16), method="fgsm",
                                     eps=0.1, alpha=0.5)
        # Momentum: an optimizer slot that BackupAndRestore must restore for the weights to match.
        trainer.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    return trainer


class Record(keras.callbacks.Callback):
    """Epochs begun, the optimizer step at train begin (after any restore) and per-epoch weights."""

    def __init__(self, out=None, task=0, stop_at_step=None):
        super().__init__()
        self.out, self.task, self.stop_at_step = out, task, stop_at_step
        self.epochs, self.start_step, self.weights = [], None, {}

    def on_train_begin(self, logs=None):
        self.start_step = int(self.model.optimizer.iterations.numpy())

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)

    def on_epoch_end(self, epoch, logs=None):
        weights = [w.numpy() for w in self.model.model.weights]
        self.weights[epoch] = weights
        if self.out is not None:
            path = self.out / f"weights_e{epoch}_w{self.task}.npz"
            np.savez(str(path) + ".tmp.npz", *weights)
            os.replace(str(path) + ".tmp.npz", path)

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if self.stop_at_step is not None and step == self.stop_at_step:
            (self.out / f"stopped_w{self.task}").write_text(str(self.stop_at_step))
            time.sleep(WAIT_TO_BE_KILLED_S)
            sys.exit(3)


def train(strategy, callbacks=()):
    trainer = build(strategy)
    record = next((c for c in callbacks if isinstance(c, Record)), None)
    if record is None:
        record = Record()
        callbacks = [*callbacks, record]
    trainer.fit(dataset(), epochs=EPOCHS, callbacks=list(callbacks), verbose=0)
    return trainer, record


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--backup", required=True)
    parser.add_argument("--stop_at_step", type=int, default=None)
    args = parser.parse_args()
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    out = Path(args.out)
    tf.config.experimental.enable_op_determinism()
    tf.config.threading.set_intra_op_parallelism_threads(1)  # two workers share a 2-core machine
    # A collective that waits longer than this for a dead peer fails instead of hanging.
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING, timeout_seconds=60)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    record = Record(out, task, args.stop_at_step)
    backup = keras.callbacks.BackupAndRestore(args.backup)
    _, record = train(strategy, callbacks=[backup, record])  # backup first: it restores, then saves
    result = {"replicas": strategy.num_replicas_in_sync, "start_step": record.start_step,
              "epochs": record.epochs}
    (out / f"result_w{task}.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
