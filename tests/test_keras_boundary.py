import pytest

import tfrobust
from tfrobust._keras import check_tf_keras_model, is_keras3_object, keras


def test_package_exports_tf_keras():
    assert tfrobust.keras is keras
    assert keras.__name__ == "tf_keras"
    assert set(tfrobust.__all__) <= set(dir(tfrobust))


def test_keras3_model_is_refused_with_a_fix():
    import keras as keras3  # Keras 3, installed alongside TensorFlow

    model3 = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)])
    assert is_keras3_object(model3)
    with pytest.raises(TypeError, match="Keras 3 model.*tf_keras"):
        check_tf_keras_model(model3)


def test_other_objects_are_refused_and_tf_keras_models_pass():
    with pytest.raises(TypeError, match="must be a tf_keras Model"):
        check_tf_keras_model(object(), argument="teacher")
    check_tf_keras_model(tfrobust.models.lenet_300_100())
