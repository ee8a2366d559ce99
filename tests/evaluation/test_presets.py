"""Presets as data: every preset honours the data range, and datasets work like arrays."""

import numpy as np
import pytest
import tensorflow as tf

from tfrobust import attacks, evaluation
from tfrobust._keras import keras


@pytest.fixture(scope="module")
def problem():
    """A 5-class MLP on [0, 1] images, trained briefly (APGD-T runs with 4 targets)."""
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, size=(96, 6, 6, 1)).astype(np.float32)
    y = np.argmax(x.reshape(96, -1)[:, :30].reshape(96, 5, 6).mean(2), 1)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(32, activation="relu"), keras.layers.Dense(5)])
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=40, batch_size=32, verbose=0)
    return model, x, y


def _rescaled(model, scale, offset):
    """The same function of the image, for inputs ``u = scale * x + offset``."""
    back = keras.layers.Rescaling(1.0 / scale, offset=-offset / scale)
    return keras.Sequential([keras.Input((6, 6, 1)), back, model])


@pytest.mark.parametrize("preset", ["fast", "standard", "autoattack", "adaptive"])
@pytest.mark.parametrize("scale, offset", [(255.0, 0.0), (2.0, -1.0)])
def test_every_preset_gives_the_same_figure_in_the_models_own_range(problem, preset, scale, offset):
    model, x, y = problem
    kw = dict(preset=preset, steps=10, queries=200, seed=0)
    ref = evaluation.robust_accuracy(model, x, y, eps=0.05, **kw)
    other = _rescaled(model, scale, offset)
    rep = evaluation.robust_accuracy(other, scale * x + offset, y, eps=0.05 * scale, clip_min=offset,
                                     clip_max=scale + offset, **kw)
    assert 0.0 < ref.robust_accuracy < ref.clean_accuracy  # the attacks did something
    assert rep.clean_accuracy == ref.clean_accuracy
    # float rounding of the rescaled inputs may flip a point on a decision boundary
    assert abs(rep.robust_accuracy - ref.robust_accuracy) <= 2 / len(x)
    assert rep.adversarial.min() >= offset and rep.adversarial.max() <= scale + offset
    assert np.abs(rep.adversarial - (scale * x + offset)).max() <= 0.05 * scale * (1 + 1e-5)
    assert rep.config["clip_min"] == offset and rep.config["clip_max"] == scale + offset


def test_presets_are_data_resolved_per_model():
    stages, skipped = evaluation.plan("standard", num_classes=10)
    assert [s.label for s in stages] == ["apgd-ce", "apgd-dlr", "apgd-t", "square"] and not skipped
    assert stages[2].attack["targets"] == 9 and stages[3].attack["queries"] == 5000
    stages, skipped = evaluation.plan("standard", num_classes=3)
    assert [s.label for s in stages] == ["apgd-ce", "apgd-dlr", "square"]
    assert skipped == ["apgd-t (needs >= 4 classes)"]
    stages, skipped = evaluation.plan("standard", num_classes=2)
    assert [s.label for s in stages] == ["apgd-ce", "square"]
    assert skipped == ["apgd-dlr (needs >= 3 classes)", "apgd-t (needs >= 4 classes)"]
    # AutoAttack's rand version for a stochastic model: APGD-CE and APGD-DLR with EOT, no restarts
    stages, _ = evaluation.plan("adaptive", num_classes=10, stochastic=True)
    assert [s.label for s in stages[:2]] == ["apgd-ce-eot", "apgd-dlr-eot"]
    assert all(s.eot and s.attack.get("restarts", 1) == 1 for s in stages[:2])
    stages, _ = evaluation.plan("adaptive", num_classes=10, gradient_masking=True)
    assert [s.label for s in stages] == ["apgd-ce", "apgd-dlr", "apgd-t", "apgd-ce-bpda", "apgd-dlr-bpda",
                                          "apgd-t-bpda", "square", "square-restart2", "square-restart3",
                                          "square-restart4", "square-restart5"]
    assert [s.seed(7) for s in stages[-5:]] == [7 + r * evaluation.RESTART_SEED_STRIDE for r in range(5)]
    # the queries override reaches every restart; 0 switches them all off
    stages, _ = evaluation.plan("adaptive", num_classes=10, gradient_masking=True, queries=50)
    assert [s.attack["queries"] for s in stages if s.attack["name"] == "square"] == [50] * 5
    stages, _ = evaluation.plan("adaptive", num_classes=10, gradient_masking=True, queries=0)
    assert not [s for s in stages if s.attack["name"] == "square"]
    stages, _ = evaluation.plan("fast", num_classes=10)
    assert attacks.get(stages[0].attack, eps=0.1).effective_step_size == pytest.approx(2.5 * 0.1 / 20)


def test_custom_cascade_and_dataset_input(problem):
    model, x, y = problem
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    assert evaluation.accuracy(model, ds) == evaluation.accuracy(model, x, y)
    custom = [{"name": "fgsm"}, {"name": "pgd", "steps": 5}]
    a = evaluation.robust_accuracy(model, ds, eps=0.05, preset=custom)
    b = evaluation.robust_accuracy(model, x, y, eps=0.05, preset=custom)
    assert list(a.per_attack) == ["fgsm", "pgd"] and a.config["preset"] == "custom"
    assert a.robust_accuracy == b.robust_accuracy
