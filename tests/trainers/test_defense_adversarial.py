"""Adversarial training of the label-conditioned defenses (CAS, CIFS, PCL) through AdversarialTrainer."""

import numpy as np
import pytest
import tensorflow as tf

from tfrobust import attacks, models, tflite_tools, utils
from tfrobust._keras import keras
from tfrobust.trainers import AdversarialTrainer, Trainer

EPS, STEPS = 0.1, 3
LABELLED = ("cas", "cifs", "pcl")


def _pair(defense, seed=0):
    utils.set_seed(seed)
    return models.defended_cnn(defense, width=4, dense_units=16, return_train_model=True)


def _ce(y, logits):
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


@pytest.mark.parametrize("defense", LABELLED)
def test_defense_at_fits_evaluates_reloads_and_converts_to_int8(defense, batches, tiny_data, tmp_path):
    pair = _pair(defense)
    trainer = AdversarialTrainer(pair, method="pgd", eps=EPS, steps=STEPS, eval_attack="pgd",
                                 eval_steps=2)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    seen = []
    callbacks = [keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(logs["loss"])),
                 keras.callbacks.ModelCheckpoint(str(tmp_path / "ckpt.keras"))]
    hist = trainer.fit(batches, epochs=1, validation_data=batches, callbacks=callbacks, verbose=0)
    assert len(seen) == 3 and np.all(np.isfinite(seen))
    for key in ("loss", "accuracy", "adv_accuracy", "val_adv_accuracy"):
        assert np.isfinite(hist.history[key][0]), key
    result = trainer.evaluate(batches, return_dict=True, verbose=0)
    assert 0.0 <= result["adv_accuracy"] <= 1.0
    # What is saved (by ModelCheckpoint and save_inner) is the inference model x -> logits.
    path = trainer.save_inner(tmp_path / "model.keras")
    reloaded = keras.models.load_model(path)
    assert len(reloaded.inputs) == 1 and reloaded.name == pair[1].name
    x = tiny_data[0][:32]
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), pair[1].predict(x, verbose=0), atol=1e-5)
    assert len(keras.models.load_model(tmp_path / "ckpt.keras").inputs) == 1
    blob = tflite_tools.convert(reloaded, "int8", representative_data=tiny_data[0][:64])
    assert len(blob) > 1000


def _one_step_loss(trainer, x, y):
    """The loss fit reports for one batch (computed before the update)."""
    trainer.compile(optimizer=keras.optimizers.SGD(0.0))
    return trainer.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=False).history["loss"][0]


@pytest.mark.parametrize("defense", LABELLED)
def test_auxiliary_loss_is_computed_on_the_adversarial_batch(defense, tiny_data):
    x, y = tiny_data[0][:32], tiny_data[1][:32].astype(np.int32)
    train_model, model = _pair(defense)
    # Outside the trainer: PGD on the inference model, then CE + the layers' add_loss terms of
    # the training path's forward pass on x_adv.
    x_adv = attacks.pgd(model, tf.constant(x), tf.constant(y), eps=EPS, step_size=2.5 * EPS / STEPS,
                        steps=STEPS, random_start=False)
    expected = {}
    for name, images in (("adv", x_adv), ("clean", tf.constant(x))):
        logits = train_model([images, tf.constant(y)], training=True).numpy()
        aux = float(tf.add_n(train_model.losses))
        assert aux > 0.0
        expected[name] = _ce(y, logits) + aux
    trainer = AdversarialTrainer(model, train_model=train_model, method="pgd", eps=EPS, steps=STEPS,
                                 random_start=False)
    reported = _one_step_loss(trainer, x, y)
    np.testing.assert_allclose(reported, expected["adv"], rtol=1e-4)
    assert abs(reported - expected["clean"]) > 1e-3  # the clean batch would give another loss


def test_cas_at_loss_matches_numpy_formula(tiny_data):
    """CE(head(f * M_y)) + beta * CE(GAP(f) M, y) on the features f of x_adv, in NumPy."""
    x, y = tiny_data[0][:32], tiny_data[1][:32].astype(np.int32)
    train_model, model = _pair("cas")
    x_adv = attacks.pgd(model, tf.constant(x), tf.constant(y), eps=EPS, step_size=2.5 * EPS / STEPS,
                        steps=STEPS, random_start=False)
    cas, head = train_model.get_layer("cas"), train_model.get_layer("logits")
    features = keras.Model(train_model.inputs, train_model.get_layer("act3_relu").get_output_at(0))
    f = features([x_adv, tf.constant(y)]).numpy()
    m = cas.kernel.numpy()
    w, b = (v.numpy() for v in head.weights)
    expected = _ce(y, (f * m[:, y].T) @ w + b) + cas.beta * _ce(y, f @ m)
    reported = _one_step_loss(AdversarialTrainer((train_model, model), method="pgd", eps=EPS,
                                                 steps=STEPS, random_start=False), x, y)
    np.testing.assert_allclose(reported, expected, rtol=1e-4)


def test_plain_trainer_trains_the_label_conditioned_path(tiny_data):
    x, y = tiny_data[0][:32], tiny_data[1][:32].astype(np.int32)
    train_model, model = _pair("pcl")
    logits = train_model([tf.constant(x), tf.constant(y)], training=True).numpy()
    expected = _ce(y, logits) + float(tf.add_n(train_model.losses))
    np.testing.assert_allclose(_one_step_loss(Trainer((train_model, model)), x, y), expected, rtol=1e-4)


def test_pair_arguments_are_checked():
    train_model, model = _pair("cas")
    other_train, _ = _pair("cas", seed=1)
    with pytest.raises(ValueError, match="share every trainable weight"):
        AdversarialTrainer(model, train_model=other_train)
    with pytest.raises(ValueError, match="train_model"):
        AdversarialTrainer((train_model, model), train_model=train_model)
    with pytest.raises(ValueError, match="images, labels"):
        AdversarialTrainer(model, train_model=model)
    with pytest.raises(NotImplementedError, match="pair"):
        AdversarialTrainer((train_model, model)).get_config()
