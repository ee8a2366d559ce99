"""What the Python-level command tests share: one small trained model on disk.

Test modules that need another model define their own ``saved_model`` fixture, which overrides
this one.
"""

import pytest

from tfrobust import data, utils
from tfrobust._keras import keras


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, base_seed):
    """A 2-layer Dense net trained for one epoch on 200 Fashion-MNIST images (a .keras path)."""
    x, y = data.load_dataset("fashion_mnist", "train", limit=200, download=False)
    utils.set_seed(base_seed)
    model = keras.Sequential([keras.layers.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    return str(utils.atomic_save_model(model, tmp_path_factory.mktemp("m") / "model.keras"))
