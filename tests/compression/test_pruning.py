import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from conftest import Scale, compile_logits, tiny_cnn

from tfrobust._keras import keras
from tfrobust.compression import (
    model_size,
    prune,
    prune_scope,
    pruning_callbacks,
    save,
    sparsity_report,
    strip,
)

# Building blocks tested where they are defined (not part of the public compression API).
from tfrobust.compression.shared import tfmot, wrapped_layers

KERNELS = ("conv1", "conv2", "fc1", "logits")


def _fit_pruned(model, data, steps=1):
    x, y = data
    compile_logits(model)
    model.fit(x[:32 * steps], y[:32 * steps], batch_size=32, epochs=1, callbacks=pruning_callbacks(),
              verbose=0)
    return model


@pytest.fixture(scope="module")
def pruned_90(small_data, base_seed):
    keras.utils.set_random_seed(base_seed)  # module fixture: runs before the per-test seed
    dense = tiny_cnn()
    return dense, _fit_pruned(prune(dense, 0.9, frequency=1), small_data)


def _numpy_sparsity(model, name):
    k = model.get_layer(name).kernel.numpy()
    return np.mean(k == 0), k.size


def test_pruning_reaches_requested_sparsity_per_layer_and_survives_save_load(pruned_90, small_data, tmp_path):
    target = 0.9
    _, pruned = pruned_90
    stripped = strip(pruned)
    assert wrapped_layers(stripped) == []
    report = sparsity_report(stripped)
    for name in KERNELS:
        measured, size = _numpy_sparsity(stripped, name)
        assert abs(measured - target) <= 1.0 / size + 1e-9, (name, measured)
        assert report.by_layer()[name] == pytest.approx(measured)
    info = save(stripped, tmp_path / "pruned.keras")
    loaded = keras.models.load_model(info["path"])
    for name in KERNELS:
        np.testing.assert_array_equal(loaded.get_layer(name).kernel.numpy(),
                                      stripped.get_layer(name).kernel.numpy())
    assert sparsity_report(loaded).overall == pytest.approx(report.overall)
    x = small_data[0][:16]
    np.testing.assert_allclose(loaded(x).numpy(), pruned(x).numpy(), atol=1e-5)


def test_wrapped_model_saves_and_loads_under_prune_scope(pruned_90, tmp_path):
    _, pruned = pruned_90
    with pytest.warns(UserWarning, match="strip"):
        save(pruned, tmp_path / "wrapped.h5")
    with prune_scope():
        loaded = keras.models.load_model(tmp_path / "wrapped.h5")
    assert wrapped_layers(loaded) == wrapped_layers(pruned)
    assert sparsity_report(loaded).by_layer() == pytest.approx(sparsity_report(pruned).by_layer())


def test_report_measures_stripped_weights_of_a_wrapped_model(pruned_90):
    _, pruned = pruned_90
    assert sparsity_report(pruned).by_layer() == sparsity_report(strip(pruned)).by_layer()
    assert sparsity_report(pruned).overall == pytest.approx(0.9, abs=0.01)


def test_polynomial_schedule_ramps_to_target(small_data):
    pruned = prune(tiny_cnn(), 0.8, schedule="polynomial", begin_step=0, end_step=3, frequency=1)
    _fit_pruned(pruned, small_data, steps=4)
    assert sparsity_report(pruned).by_layer()["fc1"] == pytest.approx(0.8, abs=1e-3)


def test_two_four_structure_zeroes_two_of_every_four_input_channels(small_data):
    stripped = strip(_fit_pruned(prune(tiny_cnn(), 0.5, structure="2:4", frequency=1), small_data))
    for name in ("conv2", "fc1", "logits"):
        k = stripped.get_layer(name).kernel.numpy()
        k = k.reshape(-1, k.shape[-2], k.shape[-1])
        groups = np.moveaxis(k, 1, -1).reshape(-1, 4)  # 4 consecutive input channels
        assert np.all(np.sum(groups == 0, axis=1) >= 2), name


def test_custom_layer_without_prunable_api_is_left_dense_with_warning(small_data):
    model = tiny_cnn(custom=Scale(name="scale"))
    with pytest.warns(UserWarning, match=r"scale \(Scale\)"):
        pruned = prune(model, 0.5, frequency=1)
    _fit_pruned(pruned, small_data)
    stripped = strip(pruned)
    assert np.all(stripped.get_layer("scale").get_weights()[0] != 0)
    assert sparsity_report(stripped).by_layer()["fc1"] == pytest.approx(0.5, abs=1e-3)


def test_prunable_custom_layer_is_pruned(small_data):
    mot = tfmot()

    class PrunableScale(Scale, mot.sparsity.keras.PrunableLayer):
        def get_prunable_weights(self):
            return [self.gain]

    model = tiny_cnn(custom=PrunableScale(name="pscale"))
    # distinct magnitudes (the "ones" init ties, and TF-MOT keeps ties)
    model.get_layer("pscale").set_weights([np.linspace(0.5, 1.5, 8).astype(np.float32)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "left dense" warning
        pruned = prune(model, 0.5, frequency=1)
    _fit_pruned(pruned, small_data)
    gain = strip(pruned).get_layer("pscale").get_weights()[0]
    assert np.mean(gain == 0) == pytest.approx(0.5)


def test_pruned_model_is_smaller_only_after_gzip_and_unstripped_warns(pruned_90):
    dense, pruned = pruned_90
    with pytest.warns(UserWarning, match="strip"):
        wrapped_size = model_size(pruned)
    stripped = strip(pruned)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        small, big = model_size(stripped), model_size(dense)
    assert wrapped_size["wrapped_layers"]
    assert small["gzip_bytes"] < 0.5 * big["gzip_bytes"]
    assert wrapped_size["raw_bytes"] > small["raw_bytes"]


def test_keras3_model_is_pruned_through_the_tf_keras_bridge():
    import keras as keras3

    model = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2, name="fc")])
    pruned = prune(model, 0.5)
    assert isinstance(pruned, keras.Model) and wrapped_layers(pruned) == ["prune_low_magnitude_fc"]
    x = np.ones((3, 4), "float32")
    np.testing.assert_allclose(strip(pruned)(x).numpy(), model(x).numpy(), atol=1e-6)  # same weights


def test_keras3_layer_without_tf_keras_twin_is_refused_by_name():
    import keras as keras3

    class Mine(keras3.layers.Layer):  # a user's own Keras 3 layer: no tf_keras counterpart
        def call(self, x):
            return x

    inp = keras3.Input((4,))
    model = keras3.Model(inp, keras3.layers.Dense(2)(Mine(name="mine")(inp)))
    with pytest.raises(TypeError, match="layer 'mine'.*no tf_keras counterpart"):
        prune(model, 0.5)


def test_subclassed_model_is_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="subclassed"):
        prune(net, 0.5)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"target_sparsity": 1.0}, "target_sparsity"),
    ({"target_sparsity": -0.1}, "target_sparsity"),
    ({"schedule": "cosine"}, "schedule"),
    ({"schedule": "polynomial", "end_step": 0}, "end_step"),
    ({"frequency": 0}, "frequency"),
    ({"structure": "3:7"}, "structure"),
    ({"structure": "2:4", "target_sparsity": 0.8}, "target_sparsity"),
    ({"begin_step": -2}, "begin_step"),
])
def test_bad_arguments_raise(kwargs, fragment):
    args = {"target_sparsity": 0.5, **kwargs}
    with pytest.raises(ValueError, match=fragment):
        prune(tiny_cnn(), **args)


def test_keras3_process_without_the_switch_compresses_and_keeps_its_keras(tmp_path):
    """No TF_USE_LEGACY_KERAS: a Keras 3 model is pruned and quantized through the bridge, and the
    process keeps its environment, Keras 3 behind ``tf.keras``, and a user's Keras 3 model trains."""
    code = textwrap.dedent("""
        import os
        os.environ.pop("TF_USE_LEGACY_KERAS", None)
        import numpy as np
        import keras
        import tensorflow as tf
        from tfrobust.compression import prune, quantize, strip
        from tfrobust.tflite_tools import convert
        import sys
        print("TFMOT_IMPORTED", "tensorflow_model_optimization" in sys.modules)
        m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)])
        x = np.random.default_rng(0).uniform(size=(16, 4)).astype("float32")
        qat = quantize(strip(prune(m, 0.5)))
        convert(qat, "int8", representative_data=x)
        print("SWITCH", os.environ.get("TF_USE_LEGACY_KERAS"), "TF_KERAS", tf.keras.version()[0])
        user = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        user.compile(optimizer="sgd", loss="mse")
        user.fit(x, np.zeros((16, 2), "float32"), verbose=0)
        user.save(sys.argv[1])
        print("USER_OK", type(keras.models.load_model(sys.argv[1])).__name__)
    """)
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "user.keras")], capture_output=True,
                         text=True, env=env, timeout=600)
    assert "TFMOT_IMPORTED False" in res.stdout, res.stderr[-2000:]  # importing tfrobust is lazy
    assert "SWITCH None TF_KERAS 3" in res.stdout, res.stderr[-2000:]
    assert "USER_OK Sequential" in res.stdout, res.stderr[-2000:]


def test_adversarial_fine_tuning_of_a_pruned_model_reaches_the_sparsity(small_data):
    """Pruning masks update when the wrapped model is trained through AdversarialTrainer (the
    pipeline fine-tunes robust models this way so pruning does not undo adversarial training)."""
    from tfrobust import data
    from tfrobust.trainers import AdversarialTrainer

    x, y = small_data
    pruned = prune(tiny_cnn(), 0.8, frequency=1)
    trainer = AdversarialTrainer(pruned, method="fgsm_rs", eps=0.1)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    history = trainer.fit(data.as_tf_dataset(x[:128], y[:128], batch_size=32), epochs=1,
                          callbacks=pruning_callbacks(), verbose=0)
    assert "adv_accuracy" in history.history
    stripped = strip(pruned)
    for name in KERNELS:
        measured, size = _numpy_sparsity(stripped, name)
        assert abs(measured - 0.8) <= 1.0 / size + 1e-9, (name, measured)
