import numpy as np
import pytest
import tensorflow as tf
from conftest import Scale, TopHalf, compile_logits, tiny_cnn

from tfrobust._keras import keras
from tfrobust.compression import (
    ActivationThreshold,
    cluster,
    prune,
    pruning_callbacks,
    quantize,
    quantize_scope,
    register_quantize_config,
    sparsity_report,
    strip,
)

# Building blocks tested where they are defined (not part of the public compression API).
from tfrobust.compression.shared import output_quantize_config_class, quantize_config_for, tfmot

qk = tfmot().quantization.keras


@keras.utils.register_keras_serializable(package="tfrobust_tests")
class OutputOnlyConfig(qk.QuantizeConfig):
    """Quantize only the output of a weightless activation-like layer (k-WTA style)."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [qk.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                                     narrow_range=False)]

    def get_config(self):
        return {}


register_quantize_config(TopHalf, OutputOnlyConfig)


def _litert(model_bytes, x):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model_bytes)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.resize_tensor_input(inp["index"], x.shape)
    it.allocate_tensors()
    it.set_tensor(inp["index"], x)
    it.invoke()
    ops = {op["op_name"] for op in it._get_ops_details()}
    return it.get_tensor(out["index"]), ops


def test_model_with_kwta_prunes_quantizes_and_converts_to_int8(small_data, tmp_path):
    from tfrobust.layers import KWinnersTakeAll

    x, y = small_data
    model = compile_logits(tiny_cnn(custom=KWinnersTakeAll(0.5, name="kwta")))
    model.fit(x[:256], y[:256], batch_size=64, epochs=1, verbose=0)
    pruned = compile_logits(prune(model, 0.5, frequency=1))
    pruned.fit(x[:128], y[:128], batch_size=64, epochs=1, callbacks=pruning_callbacks(), verbose=0)
    stripped = strip(pruned)
    assert sparsity_report(stripped).by_layer()["fc1"] == pytest.approx(0.5, abs=1e-3)
    qat = compile_logits(quantize(stripped), lr=1e-4)
    assert "quant_kwta" in [layer.name for layer in qat.layers]
    qat.fit(x[:128], y[:128], batch_size=64, epochs=1, verbose=0)
    # the QAT model saves and loads under the scope
    qat.save(tmp_path / "qat.h5")
    with quantize_scope(qat):
        reloaded = keras.models.load_model(tmp_path / "qat.h5")
    xb = x[:64]
    np.testing.assert_allclose(reloaded(xb).numpy(), qat(xb).numpy(), atol=1e-5)
    conv = tf.lite.TFLiteConverter.from_keras_model(qat)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    tfl = conv.convert()
    out, ops = _litert(tfl, xb)
    assert "CONV_2D" in ops and "FULLY_CONNECTED" in ops
    from ai_edge_litert.interpreter import Interpreter

    dtypes = {d["name"]: d["dtype"] for d in Interpreter(model_content=tfl).get_tensor_details()}
    assert any(dt == np.int8 for dt in dtypes.values())
    keras_pred = np.argmax(qat(xb).numpy(), 1)
    # Margins measured over seeds 0-1 (--seed): agreement 1.0 both; max error / max |logit| 0.043, 0.125
    assert np.mean(np.argmax(out, 1) == keras_pred) >= 0.9  # int8 vs fake-quant agreement
    assert np.abs(out - qat(xb).numpy()).max() < 0.5 * np.abs(qat(xb).numpy()).max()


def test_unregistered_custom_layer_stays_float_with_warning():
    model = tiny_cnn(custom=Scale(name="scale"))
    with pytest.warns(UserWarning, match=r"scale \(Scale\)"):
        qat = quantize(model)
    assert "scale" in [layer.name for layer in qat.layers]


def test_user_registered_config_is_used_for_a_custom_layer():
    qat = quantize(tiny_cnn(custom=TopHalf(name="tophalf")))
    wrapper = qat.get_layer("quant_tophalf")
    assert isinstance(wrapper.quantize_config, OutputOnlyConfig)


def test_registry_lookup_and_bad_arguments():
    from tfrobust.layers import KWinnersTakeAll, WTADropout

    assert isinstance(quantize_config_for(TopHalf()), OutputOnlyConfig)
    for layer in (KWinnersTakeAll(0.5), WTADropout(0.5), ActivationThreshold(0.1)):
        assert isinstance(quantize_config_for(layer), output_quantize_config_class())
    assert quantize_config_for(Scale()) is None
    with pytest.raises(TypeError, match="layer_cls"):
        register_quantize_config(int, OutputOnlyConfig)
    with pytest.raises(TypeError, match="config"):
        register_quantize_config(Scale, 3)


def test_clustering_limits_unique_values_and_strips(small_data):
    x, y = small_data
    model = compile_logits(tiny_cnn())
    model.fit(x[:128], y[:128], batch_size=64, epochs=1, verbose=0)
    clustered = compile_logits(cluster(model, 8), lr=1e-4)
    # starts from the trained weights: each weight moves at most to its nearest of 8 centroids
    w = model.get_layer("fc1").kernel.numpy()
    shared = strip(clustered).get_layer("fc1").kernel.numpy()
    assert np.mean(np.abs(shared - w)) < 0.25 * np.std(w)
    clustered.fit(x[:128], y[:128], batch_size=64, epochs=1, verbose=0)
    stripped = strip(clustered)
    for name in ("conv2", "fc1", "logits"):
        assert len(np.unique(stripped.get_layer(name).kernel.numpy())) <= 8, name
    with pytest.raises(ValueError, match="number_of_clusters"):
        cluster(model, 1)
    with pytest.raises(ValueError, match="init"):
        cluster(model, 4, init="fancy")
