"""Run as a script: trainers inside a MirroredStrategy over two logical CPU devices.

Logical devices must be configured before TensorFlow initialises its devices, which happens on
the first op of a process, so the test runs this file in a fresh subprocess. It prints one JSON
line with the figures the test checks.
"""

import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from tfrobust import models, utils  # noqa: E402
from tfrobust._keras import keras  # noqa: E402
from tfrobust.trainers import AdversarialTrainer, Distiller  # noqa: E402


def build(seed=0):
    utils.set_seed(seed)
    return models.small_cnn(width=4, dense_units=16)


def one_step_weights(make_trainer, strategy, x, y):
    """Weights after one SGD step on the full batch (global batch = len(x))."""
    with strategy.scope():
        trainer = make_trainer(build())
        trainer.compile(optimizer=keras.optimizers.SGD(0.5), metrics=["accuracy"])
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(len(x))
    hist = trainer.fit(ds, epochs=1, verbose=0)
    return [w.numpy() for w in trainer.model.weights], hist.history


def main():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (32, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, 32).astype(np.int64)
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    default = tf.distribute.get_strategy()
    teacher = build(seed=1)
    makers = {
        "fgsm": lambda m: AdversarialTrainer(m, method="fgsm", eps=0.1),
        "distiller": lambda m: Distiller(m, teacher=teacher, temperature=3.0, alpha=0.4),
    }
    out = {"replicas": mirrored.num_replicas_in_sync, "max_weight_diff": {}, "loss": {}}
    for name, make in makers.items():
        w_m, h_m = one_step_weights(make, mirrored, x, y)
        w_d, h_d = one_step_weights(make, default, x, y)
        out["max_weight_diff"][name] = float(max(np.max(np.abs(a - b)) for a, b in zip(w_m, w_d)))
        out["loss"][name] = [h_m["loss"][0], h_d["loss"][0]]
    # fgsm_rs and trades draw different noise per replica: check they train and evaluate.
    with mirrored.scope():
        trainer = AdversarialTrainer(build(), method="trades", eps=0.1, steps=2, eval_attack="pgd",
                                     eval_steps=2)
        trainer.compile(optimizer="adam", metrics=["accuracy"])
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    hist = trainer.fit(ds, epochs=1, validation_data=ds, verbose=0)
    out["trades_history"] = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
