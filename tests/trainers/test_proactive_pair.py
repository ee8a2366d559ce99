"""ProactiveDefense (and FeedbackLearning) with label-conditioned (train_model, model) pairs: CAS."""

import numpy as np
import pytest
import tensorflow as tf

from tfrobust import attacks, models, utils
from tfrobust._keras import keras, keras3
from tfrobust.trainers import AttackSpec, FeedbackLearning, ProactiveDefense, Trainer

EPS = 0.1


def _pair(seed=0, optimizer=None, compile_model=True):
    utils.set_seed(seed)
    train_model, model = models.defended_cnn("cas", width=4, dense_units=16, return_train_model=True)
    if compile_model:
        model.compile(optimizer=optimizer or keras.optimizers.Adam(3e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    return train_model, model


def _ce(y, logits):
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


@pytest.fixture(scope="module")
def test_split(fashion_test):
    return fashion_test[0][:48], fashion_test[1][:48]


def _loop(pair, **kwargs):
    return ProactiveDefense(pair, attack=AttackSpec("fgsm", eps=EPS),
                            holdout_attack=AttackSpec("pgd", eps=EPS, steps=2), **kwargs)


def test_cas_pair_trains_through_fit_with_a_callback_and_its_inference_model_reloads(
        tiny_data, test_split, tmp_path):
    x, y = tiny_data
    train_model, model = _pair()
    seen = []
    callback = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(dict(logs)))
    loop = _loop((train_model, model), rounds=1, batch_size=64, callbacks=[callback],
                 directory=tmp_path / "run")
    assert isinstance(loop.model, Trainer) and loop.inner is model and loop.model.train_model is train_model
    assert loop.model.optimizer is model.optimizer  # the user's optimizer object trains the pair
    report = loop.run(x, y, *test_split)
    assert [r["round"] for r in report["rounds"]] == [0, 1]
    # round 0: 192 images in batches of 64; round 1: 192 clean + 192 FGSM images
    assert len(seen) == 3 + 6
    assert all(np.isfinite(s["loss"]) and 0.0 <= s["accuracy"] <= 1.0 for s in seen)
    for row in report["rounds"]:
        assert np.isfinite(row["train_loss"])
        for key in ("clean_accuracy", "attack_accuracy", "holdout_accuracy"):
            assert 0.0 <= row[key] <= 1.0
    # What is saved is the inference model x -> logits; it reloads without the training path.
    path = utils.atomic_save_model(loop.inner, tmp_path / "cas.keras")
    reloaded = keras.models.load_model(path)
    assert len(reloaded.inputs) == 1
    np.testing.assert_allclose(reloaded.predict(x[:32], verbose=0), model.predict(x[:32], verbose=0),
                               atol=1e-5)
    # The checkpoint holds the pair's weights: a fresh pair in the same directory resumes trained.
    fresh_train, fresh = _pair(seed=3)
    again = _loop((fresh_train, fresh), rounds=1, batch_size=64, directory=tmp_path / "run")
    assert again.run(x, y, *test_split) == report
    np.testing.assert_allclose(fresh.predict(x[:32], verbose=0), model.predict(x[:32], verbose=0),
                               atol=1e-5)


def test_cas_loss_of_a_round_is_computed_on_the_adversarial_examples(tiny_data, test_split):
    """The round's loss = CE(head(f * M_y)) + beta * CE(GAP(f) M, y) over [x; FGSM(x)], in NumPy."""
    x, y = tiny_data[0][:32], tiny_data[1][:32].astype(np.int32)
    train_model, model = _pair(optimizer=keras.optimizers.SGD(0.0))  # the weights stay put
    # Attack A on the inference model, then the training path on the round's whole set.
    x_adv = attacks.fgsm(model, tf.constant(x), tf.constant(y), eps=EPS).numpy()
    assert np.abs(x_adv - x).max() > 0.0
    cas, head = train_model.get_layer("cas"), train_model.get_layer("logits")
    features = keras.Model(train_model.inputs, train_model.get_layer("act3_relu").get_output_at(0))
    m = cas.kernel.numpy()
    w, b = (v.numpy() for v in head.weights)

    def numpy_loss(images, labels):
        f = features([tf.constant(images), tf.constant(labels)]).numpy()
        return _ce(labels, (f * m[:, labels].T) @ w + b) + cas.beta * _ce(labels, f @ m)

    both, yy = np.concatenate([x, x_adv]), np.concatenate([y, y])
    expected = numpy_loss(both, yy)
    # and the eager forward pass of the training path with its add_loss terms agrees
    logits = train_model([tf.constant(both), tf.constant(yy)], training=True).numpy()
    np.testing.assert_allclose(_ce(yy, logits) + float(tf.add_n(train_model.losses)), expected, rtol=1e-5)
    report = _loop((train_model, model), rounds=1, batch_size=len(both), pretrained=True).run(
        x, y, *test_split)
    first, second = report["rounds"]
    assert first["train_loss"] is None  # pretrained: no fit in round 0
    np.testing.assert_allclose(second["train_loss"], expected, rtol=1e-4)
    # the clean images twice would give another loss: the adversarial half is in the objective
    assert abs(second["train_loss"] - numpy_loss(np.concatenate([x, x]), yy)) > 1e-3


def test_a_compiled_training_model_trains_the_pair_and_feedback_learning_takes_pairs_too():
    train_model, model = _pair(compile_model=False)
    train_model.compile(optimizer=keras.optimizers.Adam(1e-3),
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    loop = _loop((train_model, model))
    assert loop.model.optimizer is train_model.optimizer and loop.inner is model
    feedback = FeedbackLearning((train_model, model), attack=AttackSpec("fgsm", eps=EPS))
    assert isinstance(feedback.model, Trainer) and feedback.inner is model


def test_bad_pairs_and_callbacks_are_refused():
    train_model, model = _pair(compile_model=False)
    with pytest.raises(ValueError, match="compiled"):
        _loop((train_model, model))
    other_train, _ = _pair(seed=1)
    _, compiled = _pair(seed=2)
    with pytest.raises(ValueError, match="share every trainable weight"):
        _loop((other_train, compiled))
    with pytest.raises(ValueError, match="images, labels"):
        _loop((compiled, compiled))
    with pytest.raises(TypeError, match="callbacks"):
        _loop(_pair()[1], callbacks=keras.callbacks.History())


def test_inner_of_a_keras3_trainer_is_its_wrapped_model():
    """A Keras 3 model's trainer is Trainer's Keras 3 twin (not a subclass): inner still unwraps it."""
    model = models.get("small_cnn", flavour="keras3", width=4, dense_units=16)
    trainer = Trainer(model)
    trainer.compile(keras3.optimizers.Adam(1e-3))
    assert _loop(trainer).inner is model
