"""Black-box substitute attack: label-only oracle, query accounting, augmentation, real transfer."""

import json

import numpy as np
import pytest

from tfrobust._keras import keras
from tfrobust.attacks import SubstituteResult, substitute_attack
from tfrobust.data import as_tf_dataset, load_dataset
from tfrobust.models import small_cnn


def _tiny_substitute(input_shape, num_classes):
    return small_cnn(input_shape, num_classes, width=8, dense_units=32, name="tiny_substitute")


class _LabelOnlyOracle:
    """Wraps a Keras model; answers labels only, on NumPy batches, and records every query."""

    def __init__(self, model):
        self.model = model
        self.batches = []

    def __call__(self, images):
        assert isinstance(images, np.ndarray) and images.dtype == np.float32
        self.batches.append(images.copy())
        return self.model(images, training=False).numpy().argmax(axis=1)

    @property
    def queries(self):
        return sum(len(b) for b in self.batches)


@pytest.fixture(scope="module")
def fashion_oracle(base_seed):
    """A small CNN trained briefly on 3000 Fashion-MNIST images (~80% test accuracy)."""
    x, y = load_dataset("fashion_mnist", "train", limit=3000, download=False)
    keras.utils.set_random_seed(base_seed)
    model = small_cnn(width=16, dense_units=64, name="oracle")
    model.compile(keras.optimizers.Adam(2e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(as_tf_dataset(x[:3000], y[:3000], batch_size=64, shuffle=True, seed=0), epochs=2, verbose=0)
    return model


def test_substitute_transfer_beats_random_noise_of_same_norm(fashion_oracle):
    x_test, y_test = load_dataset("fashion_mnist", "test", limit=700, download=False)
    oracle = _LabelOnlyOracle(fashion_oracle)
    x_init, x_attack = x_test[:150], x_test[200:700]
    eps = 0.2
    res = substitute_attack(oracle, x_init, x_attack, num_classes=10, substitute=_tiny_substitute,
                            rounds=4, epochs=5, lmbda=0.1, eps=eps, seed=0)
    assert isinstance(res, SubstituteResult)
    clean_acc = np.mean(res.oracle_labels == y_test[200:700])
    assert clean_acc > 0.7  # the oracle is a real classifier

    x_adv = res.x_adv.numpy()
    assert np.max(np.abs(x_adv - x_attack)) <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    # Baseline: random signs of the same L-inf (and L2, up to clipping) size as the FGSM step.
    rng = np.random.default_rng(0)
    noise = np.clip(x_attack + eps * rng.choice([-1.0, 1.0], size=x_attack.shape), 0, 1).astype(np.float32)
    noise_rate = np.mean(fashion_oracle(noise).numpy().argmax(axis=1) != res.oracle_labels)
    # Margins measured at seed 0 (--seed): clean accuracy 0.78, agreement 0.842, transfer 0.664
    # against noise 0.258.
    assert res.substitute_agreement > 0.6
    assert res.transfer_success_rate > noise_rate + 0.15
    assert res.transfer_success_rate > 0.4
    np.testing.assert_array_equal(res.adversarial_labels, fashion_oracle(x_adv).numpy().argmax(axis=1))


def test_substitute_queries_oracle_for_labels_only_and_counts_them():
    """Oracle: a NumPy linear classifier that only returns int labels; every image is counted."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=(8 * 8, 3))

    batches = []

    def oracle(images):
        assert isinstance(images, np.ndarray)  # never a tensor: nothing can differentiate through it
        batches.append(images.copy())
        return (images.reshape(len(images), -1) @ w).argmax(axis=1)  # labels only

    x_init = rng.uniform(0, 1, size=(20, 8, 8, 1)).astype(np.float32)
    x = rng.uniform(0, 1, size=(10, 8, 8, 1)).astype(np.float32)
    res = substitute_attack(oracle, x_init, x, num_classes=3, substitute=_tiny_substitute, rounds=3,
                            epochs=1, lmbda=0.1, eps=0.1, oracle_batch_size=16, seed=0)
    counted = sum(len(b) for b in batches)
    assert res.training_queries == 20 * 2 ** (3 - 1)
    assert res.oracle_queries == counted == res.training_queries + 2 * len(x)
    assert all(len(b) <= 16 for b in batches)
    # Round 1 labels only the new points: each lies within lambda of its parent in S_0, in the box.
    new_points = np.concatenate(batches)[20:40]
    step = np.abs(new_points - x_init)
    assert np.all(step <= 0.1 + 1e-6) and np.any(step > 0.05)
    assert new_points.min() >= 0.0 and new_points.max() <= 1.0
    assert [h["train_size"] for h in res.history] == [20, 40, 80]
    assert json.loads(json.dumps(res.to_dict()))["oracle_queries"] == counted


def test_substitute_tau_flips_lambda_and_pgd_stays_in_ball():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(8 * 8, 3))

    def oracle(images):
        return images.reshape(len(images), -1) @ w  # scores: only the argmax is used

    x_init = rng.uniform(0, 1, size=(10, 8, 8, 1)).astype(np.float32)
    x = rng.uniform(0, 1, size=(6, 8, 8, 1)).astype(np.float32)
    res = substitute_attack(oracle, x_init, x, substitute=_tiny_substitute, rounds=4, epochs=1,
                            lmbda=0.1, tau=2, attack="pgd", eps=0.05, attack_kwargs={"steps": 3}, seed=0)
    assert [h["lambda"] for h in res.history] == [0.1, 0.1, -0.1, -0.1]
    assert res.config["num_classes"] == 3  # inferred from the score width
    assert np.max(np.abs(res.x_adv.numpy() - x)) <= 0.05 + 1e-6


@pytest.mark.parametrize("kwargs, error, match", [
    ({"rounds": 0}, ValueError, "rounds"),
    ({"epochs": 0}, ValueError, "epochs"),
    ({"lmbda": 0.0}, ValueError, "lmbda"),
    ({"eps": -0.1}, ValueError, "eps"),
    ({"eps": float("nan")}, ValueError, "eps"),
    ({"tau": 0}, ValueError, "tau"),
    ({"attack": "cw"}, ValueError, "attack"),
    ({"attack_kwargs": [1]}, TypeError, "attack_kwargs"),
    ({"clip_min": 1.0, "clip_max": 0.0}, ValueError, "clip_min"),
    ({"num_classes": 1}, ValueError, "num_classes"),
    ({"substitute": "small_cnn"}, TypeError, "substitute"),
])
def test_substitute_bad_arguments_raise(kwargs, error, match):
    x = np.full((4, 8, 8, 1), 0.5, np.float32)
    with pytest.raises(error, match=match):
        substitute_attack(lambda images: np.zeros(len(images), np.int64), x, x, **kwargs)


def test_substitute_bad_inputs_raise():
    def labels_only(images):
        return np.zeros(len(images), np.int64)

    x = np.full((4, 8, 8, 1), 0.5, np.float32)
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="x"):
        substitute_attack(labels_only, bad, x, num_classes=2)
    with pytest.raises(ValueError, match="x_initial"):
        substitute_attack(labels_only, x, np.full((4, 6, 6, 1), 0.5, np.float32), num_classes=2)
    with pytest.raises(TypeError, match="x.dtype"):
        substitute_attack(labels_only, x, (x * 255).astype(np.uint8), num_classes=2)
    with pytest.raises(ValueError, match="num_classes"):
        substitute_attack(labels_only, x, x)  # label-only oracle and no num_classes
    with pytest.raises(ValueError, match="oracle"):
        substitute_attack(lambda images: np.zeros((len(images), 2, 2)), x, x, num_classes=2)
    with pytest.raises(TypeError, match="oracle"):
        substitute_attack("oracle", x, x, num_classes=2)
    with pytest.raises(ValueError, match="oracle"):
        substitute_attack(lambda images: np.full(len(images), 5), x, x, num_classes=2, rounds=1, epochs=1)
