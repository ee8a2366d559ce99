"""Trainers on Keras 3 models: Keras 3 ``fit``, Keras 3 callbacks, a plain Keras 3 model saved.

``AdversarialTrainer(keras3_model)`` is the Keras 3 twin of the class (``tfrobust._keras.for_keras3``:
the same ``train_step`` code, re-bound), chosen from the model's flavour.
"""

import numpy as np
import pytest

import tfrobust
from tfrobust._keras import flavour, for_keras3, keras, keras3
from tfrobust.layers import KWinnersTakeAll
from tfrobust.trainers import AdversarialTrainer, AttackSpec, Distiller, ProactiveDefense, Trainer


def _model():
    return keras3.Sequential([keras3.Input((8, 8, 1)), keras3.layers.Conv2D(4, 3),
                              for_keras3(KWinnersTakeAll)(0.25), keras3.layers.Flatten(),
                              keras3.layers.Dense(3)])


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(48, 8, 8, 1)).astype("float32")
    return x, (x[:, :4].mean(axis=(1, 2, 3)) * 6).astype("int64") % 3


def test_adversarial_trainer_fits_a_keras3_model_with_keras3_callbacks(data, tmp_path):
    x, y = data
    model = _model()
    trainer = AdversarialTrainer(model, method="fgsm_rs", eps=0.1)
    assert flavour(trainer) == "keras3" and type(trainer).__name__ == "AdversarialTrainer"
    trainer.compile(optimizer=keras3.optimizers.Adam(1e-2), metrics=["accuracy"])
    before = model.get_weights()
    callbacks = [keras3.callbacks.BackupAndRestore(str(tmp_path / "backup")),
                 keras3.callbacks.ModelCheckpoint(str(tmp_path / "best.keras")),
                 keras3.callbacks.EarlyStopping(monitor="loss", patience=1)]
    history = trainer.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=callbacks)
    assert set(history.history) >= {"loss", "accuracy", "adv_accuracy"}
    assert all(np.isfinite(history.history["loss"]))
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    saved = keras3.models.load_model(tmp_path / "best.keras")  # ModelCheckpoint saved the inner model
    assert type(saved).__name__ == "Sequential" and flavour(saved) == "keras3"
    trainer.save_inner(tmp_path / "inner.keras")
    inner = keras3.models.load_model(tmp_path / "inner.keras")
    np.testing.assert_allclose(inner(x[:4]).numpy(), model(x[:4]).numpy(), atol=1e-6)


def test_compiled_loss_distiller_and_proactive_defense_on_keras3(data, tmp_path):
    x, y = data
    trainer = Trainer(_model())
    trainer.compile(optimizer="adam", loss=keras3.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert np.isfinite(trainer.fit(x, y, batch_size=16, epochs=1, verbose=0).history["loss"][0])
    distiller = Distiller(_model(), teacher=_model())
    distiller.compile(optimizer="adam")
    assert "distill_loss" in distiller.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    model = _model()
    model.compile(optimizer=keras3.optimizers.Adam(3e-3),
                  loss=keras3.losses.SparseCategoricalCrossentropy(from_logits=True))
    report = ProactiveDefense(model, attack=AttackSpec("fgsm", eps=0.1),
                              holdout_attack={"name": "fgsm", "eps": 0.1}, rounds=1, batch_size=16,
                              directory=tmp_path / "run").run(x, y, x[:16], y[:16])
    assert [r["round"] for r in report["rounds"]] == [0, 1]


def test_a_callback_of_the_other_flavour_is_refused_with_the_fix(data):
    x, y = data
    trainer = Trainer(tfrobust.models.get("lenet_300_100"))  # a tf_keras model
    trainer.compile(optimizer="adam")
    with pytest.raises(TypeError, match="keras3 callback.*tf_keras model"):
        trainer.fit(x, y, epochs=1, verbose=0, callbacks=[keras3.callbacks.EarlyStopping()])
    assert flavour(keras.callbacks.EarlyStopping()) == "tf_keras"
