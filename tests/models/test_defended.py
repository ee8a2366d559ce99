import numpy as np
import pytest

from tfrobust import models
from tfrobust._keras import keras
from tfrobust.attacks import inspect_model


@pytest.mark.parametrize("defense", sorted(models.DEFENSES))
def test_every_defended_cnn_trains_one_step_and_predicts(defense, fashion_test):
    x, y = fashion_test[0][:64], fashion_test[1][:64]
    train_model, model = models.defended_cnn(defense, width=4, dense_units=8, return_train_model=True)
    train_model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    inputs = (x, y) if defense in ("cas", "cifs", "pcl") else x
    loss = train_model.fit(inputs, y, batch_size=32, epochs=1, verbose=0).history["loss"][0]
    assert np.isfinite(loss)
    assert model(x[:3], training=False).shape == (3, 10)


def test_defended_cnn_declares_its_nature_to_the_evaluator():
    assert inspect_model(models.defended_cnn("sap", width=4))["stochastic"]
    assert inspect_model(models.defended_cnn("kwta", width=4))["gradient_masking"]
    assert inspect_model(models.defended_cnn("swp", width=4))["stochastic"]
    assert inspect_model(models.defended_cnn("dwp", width=4)) == {"stochastic": [], "gradient_masking": []}


def test_defended_cnn_rejects_unknown_defense():
    with pytest.raises(ValueError, match="defense"):
        models.defended_cnn("magic")
