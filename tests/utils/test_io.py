import json

import numpy as np
import pytest

from tfrobust import models, utils
from tfrobust._keras import keras


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "a.json"
    utils.atomic_write_json(target, {"b": 1, "a": [1.5]})
    utils.atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]


def test_atomic_write_refuses_nan_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.json"
    utils.atomic_write_json(target, {"a": 1})
    with pytest.raises(ValueError):
        utils.atomic_write_json(target, {"a": float("nan")})
    assert json.loads(target.read_text()) == {"a": 1}


@pytest.mark.parametrize("name", ["m.keras", "m.h5", "saved"])
def test_atomic_save_model_round_trips(tmp_path, name):
    model = models.lenet_300_100()
    x = np.random.default_rng(0).uniform(size=(3, 28, 28, 1)).astype("float32")
    path = utils.atomic_save_model(model, tmp_path / name)
    utils.atomic_save_model(model, tmp_path / name)  # overwriting works too
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_set_seed_validates():
    with pytest.raises(ValueError, match="seed"):
        utils.set_seed(-1)


def test_environment_records_versions():
    env = utils.environment()
    assert env["versions"]["tensorflow"] == "2.21.0"
    assert env["cpu_count"] >= 1


def test_set_seed_makes_initialization_reproducible_after_keras_seeding():
    keras.utils.set_random_seed(123)  # switches tf_keras to its own seeded generator
    keras.layers.Dense(3).build((None, 2))
    utils.set_seed(5)
    a = models.lenet_300_100().get_weights()[0]
    keras.layers.Dense(3).build((None, 2))
    utils.set_seed(5)
    b = models.lenet_300_100().get_weights()[0]
    np.testing.assert_array_equal(a, b)
