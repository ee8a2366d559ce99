"""Trainers and attacks under a mixed-precision global policy (issue 19, part 4).

The policy is process-global Keras state, so every test sets it through the ``policy`` fixture,
which always restores float32. Models are built after the policy is set (a layer takes the policy
in force when it is created). Assertions are on behaviour (wrapping, scale updates, underflow,
eps-ball), not on trained figures, so the float16 CPU kernels' rounding cannot flip them.
"""

import numpy as np
import pytest
import tensorflow as tf

from tfrobust import attacks, models, utils
from tfrobust._keras import keras
from tfrobust.trainers import AdversarialTrainer, Distiller, Trainer

LSO = keras.mixed_precision.LossScaleOptimizer


@pytest.fixture
def policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    try:
        yield request.param
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _model(seed=0):
    utils.set_seed(seed)
    return models.small_cnn(width=4, dense_units=16)


def _data(n=16):
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, (n, 28, 28, 1)).astype(np.float32), (np.arange(n) % 10).astype(np.int64)


def _tiny_ce(y, logits):
    # A loss 1e-6 times cross-entropy: its gradients (~1e-7 at the logits, less further down) are
    # below float16's smallest subnormal (6e-8) in the float16 backward pass unless scaled.
    return 1e-6 * keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)


def _weight_change(make_optimizer):
    model = _model()
    before = [w.numpy() for w in model.trainable_weights]
    trainer = Trainer(model)
    trainer.compile(optimizer=make_optimizer(), loss=_tiny_ce)
    x, y = _data()
    trainer.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    changes = [float(np.max(np.abs(w.numpy() - b))) for w, b in zip(model.trainable_weights, before)]
    return trainer, changes


@pytest.mark.parametrize("policy", ["mixed_float16"], indirect=True)
def test_compile_wraps_optimizer_in_loss_scale_optimizer_under_float16(policy):
    trainer = Trainer(_model())
    trainer.compile(optimizer="adam")
    assert isinstance(trainer.optimizer, LSO) and trainer.optimizer.dynamic
    # An optimizer the user wrapped already is kept as it is (not wrapped twice).
    mine = LSO(keras.optimizers.SGD(0.1), dynamic=False, initial_scale=8.0)
    trainer.compile(optimizer=mine)
    assert trainer.optimizer is mine


def test_float16_model_inside_float32_trainer_still_gets_loss_scaling():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _model()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    trainer = Trainer(model)  # the trainer's own policy is float32; the model computes in float16
    trainer.compile(optimizer="sgd")
    assert isinstance(trainer.optimizer, LSO)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"], indirect=True)
def test_no_loss_scaling_without_float16(policy):
    trainer = Trainer(_model())
    trainer.compile(optimizer="adam")
    assert not isinstance(trainer.optimizer, LSO)  # bfloat16 has float32's exponent range


@pytest.mark.parametrize("policy", ["mixed_float16"], indirect=True)
def test_loss_scaling_keeps_float16_gradients_from_underflowing(policy):
    # A fixed scale of 1 is the unscaled float16 backward pass: the gradients of the first
    # layers flush to zero and SGD leaves them unchanged. With the default dynamic scale (2**15)
    # every variable moves.
    _, unscaled = _weight_change(lambda: LSO(keras.optimizers.SGD(1.0), dynamic=False, initial_scale=1.0))
    assert unscaled[0] == 0.0 and unscaled[1] == 0.0  # first conv kernel and bias: underflow
    trainer, scaled = _weight_change(lambda: keras.optimizers.SGD(1.0))
    assert float(trainer.optimizer.loss_scale) == 2.0 ** 15
    assert all(c > 0.0 for c in scaled), scaled


@pytest.mark.parametrize("policy", ["mixed_float16"], indirect=True)
def test_overflowing_step_is_skipped_and_dynamic_scale_halves(policy):
    # 2**40 times the loss overflows float16 (max 65504) in the backward pass: LossScaleOptimizer
    # must see the non-finite gradients, skip the update and halve the scale.
    trainer, changes = _weight_change(lambda: LSO(keras.optimizers.SGD(1.0), initial_scale=2.0 ** 40))
    assert float(trainer.optimizer.loss_scale) == 2.0 ** 39
    assert all(c == 0.0 for c in changes)


# trades mixes float16 logits into a KL term, fgsm concatenates clean and adversarial batches,
# pgd runs the attack loop inside the train step; evaluation runs the PGD eval attack.
@pytest.mark.parametrize("policy, method", [("mixed_float16", "trades"), ("mixed_float16", "fgsm"),
                                            ("mixed_bfloat16", "pgd")], indirect=["policy"])
def test_adversarial_trainer_steps_under_mixed_precision(policy, method):
    trainer = AdversarialTrainer(_model(), method=method, eps=0.1, steps=2, eval_attack="pgd",
                                 eval_steps=2)
    trainer.compile(optimizer="adam", metrics=["accuracy"])
    assert isinstance(trainer.optimizer, LSO) == (policy == "mixed_float16")
    x, y = _data()
    validation = (x, y) if method == "pgd" else None
    hist = trainer.fit(x, y, batch_size=8, epochs=1, validation_data=validation, verbose=0).history
    assert all(np.isfinite(v[0]) for v in hist.values()), hist
    assert int(trainer.optimizer.iterations) == 2
    x_adv = trainer._attack(tf.constant(x), tf.constant(y))
    assert x_adv.dtype == tf.float32
    assert float(tf.reduce_max(tf.abs(x_adv - x))) <= 0.1 + 1e-6


@pytest.mark.parametrize("policy", ["mixed_float16"], indirect=True)
def test_distiller_steps_under_mixed_float16(policy):
    distiller = Distiller(_model(0), teacher=_model(1), temperature=3.0, alpha=0.4)
    distiller.compile(optimizer="adam", metrics=["accuracy"])
    x, y = _data()
    hist = distiller.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert isinstance(distiller.optimizer, LSO)
    assert np.isfinite(hist["loss"][0]) and np.isfinite(hist["distill_loss"][0])


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"], indirect=True)
@pytest.mark.parametrize("name", ["fgsm", "pgd", "apgd"])
def test_attacks_on_a_half_precision_model_craft_float32_perturbations(policy, name):
    model = _model()
    x, y = _data()
    logits = model(x, training=False)
    assert logits.dtype != tf.float32  # the model really computes in half precision
    eps = 0.05
    if name == "fgsm":
        x_adv = attacks.fgsm(model, x, y, eps=eps)
    elif name == "pgd":
        x_adv = attacks.pgd(model, x, y, eps=eps, step_size=0.02, steps=3, random_start=False)
    else:
        x_adv = attacks.apgd(model, x, y, eps=eps, steps=3, seed=0)
    assert x_adv.dtype == tf.float32
    delta = x_adv.numpy() - x
    assert np.max(np.abs(delta)) <= eps + 1e-6
    assert x_adv.numpy().min() >= 0.0 and x_adv.numpy().max() <= 1.0
    # Gradients reached the input: the perturbation is not zero, and (crafted in float32) it is
    # not restricted to float16's grid around x.
    assert np.mean(np.abs(delta) > 0) > 0.5
    rounded = tf.cast(tf.cast(x_adv, tf.float16), tf.float32).numpy()
    assert np.any(rounded != x_adv.numpy())
