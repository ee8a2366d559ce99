import numpy as np
import pytest
import tensorflow as tf

from tfrobust import attacks
from tfrobust._keras import keras
from tfrobust.losses import kl_divergence
from tfrobust.trainers import AdversarialTrainer


def _compile(trainer, lr=1e-3):
    trainer.compile(optimizer=keras.optimizers.Adam(lr), metrics=["accuracy"])
    return trainer


@pytest.mark.parametrize("method", ["fgsm", "fgsm_rs", "pgd", "trades"])
def test_each_method_fits_and_evaluates_with_callbacks(method, tiny_model, batches, tmp_path):
    trainer = _compile(AdversarialTrainer(tiny_model(), method=method, eps=0.1, steps=2,
                                          eval_attack="pgd", eval_steps=2, eps_warmup_steps=2))
    ckpt = tmp_path / "best.keras"
    callbacks = [
        keras.callbacks.ModelCheckpoint(str(ckpt), monitor="val_adv_accuracy", mode="max",
                                        save_best_only=True),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=5),
        # TensorBoard would need the `tensorboard` package, which the pinned stack does not ship.
        keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
    ]
    hist = trainer.fit(batches, epochs=2, validation_data=batches, callbacks=callbacks, verbose=0)
    for key in ("loss", "accuracy", "adv_accuracy", "val_loss", "val_accuracy", "val_adv_accuracy"):
        assert len(hist.history[key]) == 2 and np.all(np.isfinite(hist.history[key])), key
    result = trainer.evaluate(batches, return_dict=True, verbose=0)
    assert 0.0 <= result["adv_accuracy"] <= result["accuracy"] + 0.1
    # ModelCheckpoint saved the wrapped model: a plain Keras model, loadable without tfrobust.
    reloaded = keras.models.load_model(ckpt)
    assert reloaded.name == trainer.model.name and reloaded.count_params() == trainer.model.count_params()
    assert "val_adv_accuracy" in (tmp_path / "log.csv").read_text().splitlines()[0]


@pytest.mark.parametrize("method", ["fgsm", "fgsm_rs", "pgd", "trades"])
def test_training_examples_stay_in_eps_ball_and_clip_range(method, tiny_model, tiny_data):
    x, y = tiny_data[0][:32], tiny_data[1][:32]
    trainer = _compile(AdversarialTrainer(tiny_model(), method=method, eps=0.05, steps=3))
    x_adv = trainer._attack(tf.constant(x), tf.constant(y)).numpy()
    assert np.max(np.abs(x_adv - x)) <= 0.05 + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    reach = 0.05 if method in ("fgsm", "fgsm_rs") else min(0.05, 3 * trainer.default_step_size())
    assert np.max(np.abs(x_adv - x)) > 0.8 * reach  # the attack really moved the images


def test_fgsm_objective_is_alpha_mix_of_clean_and_adversarial_loss(tiny_model, tiny_data):
    x, y = tiny_data[0][:64], tiny_data[1][:64]
    model = tiny_model()
    trainer = AdversarialTrainer(model, method="fgsm", eps=0.1, alpha=0.3)
    trainer.compile(optimizer=keras.optimizers.SGD(0.0))  # lr 0: the loss is that of the initial weights
    loss = trainer.fit(tf.data.Dataset.from_tensors((x, y)), epochs=1, verbose=0).history["loss"][0]
    x_adv = attacks.fgsm(model, x, y, eps=0.1)

    def ce(images):
        p = tf.nn.softmax(model(images, training=False)).numpy().astype(np.float64)
        return float(np.mean(-np.log(p[np.arange(len(y)), y])))

    np.testing.assert_allclose(loss, 0.3 * ce(x) + 0.7 * ce(x_adv), rtol=1e-5)


def test_trades_inner_maximisation_raises_kl_over_its_start(tiny_model, tiny_data):
    x, y = tiny_data[0][:32], tiny_data[1][:32]
    model = tiny_model()
    trainer = _compile(AdversarialTrainer(model, method="trades", eps=0.1, steps=5, step_size=0.03))
    x_adv = trainer._attack(tf.constant(x), tf.constant(y))
    start = tf.clip_by_value(x + 0.001 * tf.random.normal(x.shape), 0.0, 1.0)
    clean = model(x)
    kl_adv = float(tf.reduce_mean(kl_divergence(clean, model(x_adv))))
    kl_start = float(tf.reduce_mean(kl_divergence(clean, model(start))))
    assert kl_adv > 10 * kl_start and kl_adv > 1e-3


def test_eps_warmup_is_linear_in_optimizer_steps(tiny_model):
    trainer = _compile(AdversarialTrainer(tiny_model(), eps=0.2, eps_warmup_steps=4))
    got = [float(trainer.current_eps(tf.constant(t))) for t in range(6)]
    np.testing.assert_allclose(got, [0.05, 0.1, 0.15, 0.2, 0.2, 0.2], rtol=1e-6)
    flat = _compile(AdversarialTrainer(tiny_model(), eps=0.2))
    assert float(flat.current_eps(tf.constant(0))) == pytest.approx(0.2)


def test_backup_and_restore_resume_repeats_the_uninterrupted_losses(tiny_model, batches, tmp_path,
                                                                     stop_at_epoch):
    method = "fgsm_rs"  # random starts from stateless RNG keyed on the restored optimizer step
    def make():
        return _compile(AdversarialTrainer(tiny_model(), method=method, eps=0.1, steps=2,
                                           eps_warmup_steps=4, seed=3))

    full = make().fit(batches, epochs=3, verbose=0).history["loss"]
    backup = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="simulated"):
        make().fit(batches, epochs=3, verbose=0,
                   callbacks=[keras.callbacks.BackupAndRestore(backup), stop_at_epoch(2)])
    resumed = make().fit(batches, epochs=3, verbose=0,
                         callbacks=[keras.callbacks.BackupAndRestore(backup)]).history["loss"]
    assert len(resumed) == 1  # only the epoch that had not finished
    np.testing.assert_allclose(resumed, full[2:], rtol=1e-6)


def test_saved_inner_model_reloads_and_predicts_the_same(tiny_model, batches, tiny_data, tmp_path):
    trainer = _compile(AdversarialTrainer(tiny_model(), method="fgsm_rs", eps=0.1))
    trainer.fit(batches, epochs=1, verbose=0)
    x = tiny_data[0][:50]
    expected = trainer.model.predict(x, verbose=0)
    np.testing.assert_allclose(trainer.predict(x, verbose=0), expected, rtol=1e-6)
    for path in (trainer.save_inner(tmp_path / "inner.keras"), tmp_path / "saved_via_trainer.keras"):
        if not path.exists():
            trainer.save(str(path))
        reloaded = keras.models.load_model(path)
        assert not isinstance(reloaded, AdversarialTrainer)
        np.testing.assert_allclose(reloaded.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_config_round_trip(tiny_model):
    trainer = AdversarialTrainer(tiny_model(), method="trades", eps=0.2, beta=3.0, steps=4,
                                 agc_clipping=0.02, agc_exclude=("logits",))
    clone = AdversarialTrainer.from_config(trainer.get_config())
    cfg, cfg2 = trainer.get_config(), clone.get_config()
    cfg.pop("model"), cfg2.pop("model")
    assert cfg == cfg2 and clone.model.count_params() == trainer.model.count_params()


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "free"}, "method"),
    ({"eps": -0.1}, "eps"),
    ({"alpha": 1.5}, "alpha"),
    ({"steps": 0}, "steps"),
    ({"beta": -1.0}, "beta"),
    ({"eval_attack": "cw"}, "eval_attack"),
    ({"clip_min": 1.0, "clip_max": 0.0}, "clip_min"),
    ({"step_size": 0.0}, "step_size"),
    ({"eps_warmup_steps": -1}, "eps_warmup_steps"),
    ({"agc_clipping": 0.0}, "clipping"),
])
def test_bad_arguments_raise(kwargs, match, tiny_model):
    with pytest.raises(ValueError, match=match):
        AdversarialTrainer(tiny_model(), **kwargs)


def test_refuses_a_non_keras_model():
    with pytest.raises(TypeError, match="model"):
        AdversarialTrainer(lambda x: x)
