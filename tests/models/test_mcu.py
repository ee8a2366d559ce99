import pytest

from tfrobust import models


def test_mcu_cnn_width_scales_the_channels():
    def units(model):
        return tuple(getattr(model.get_layer(n), a) for n, a in
                     (("conv1", "filters"), ("conv2", "filters"), ("conv3", "filters"), ("fc1", "units")))

    assert units(models.mcu_cnn()) == (16, 32, 64, 64)
    assert units(models.mcu_cnn(width=0.5)) == (8, 16, 32, 32)
    assert models.get("mcu_cnn", width=0.5).count_params() < models.get("mcu_cnn").count_params()
    with pytest.raises(ValueError, match="width"):
        models.mcu_cnn(width=0)


def test_mcu_cnn_binary_variant_uses_binary_hidden_layers():
    from tfrobust.layers import BinaryConv2D, BinaryDense

    model = models.mcu_cnn(width=0.5, binary=True)
    kinds = {layer.name: type(layer) for layer in model.layers}
    assert kinds["conv2"] is BinaryConv2D and kinds["conv3"] is BinaryConv2D and kinds["fc1"] is BinaryDense
    assert kinds["conv1"] is not BinaryConv2D and kinds["logits"] is not BinaryDense
