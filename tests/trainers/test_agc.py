import numpy as np
import pytest
import tensorflow as tf

from tfrobust._keras import keras
from tfrobust.trainers import Trainer, adaptive_clip_gradients


def np_agc(g, w, clipping, eps):
    """Reference: NFNet's unitwise clipping (vectors: whole norm; kernels: per output unit)."""
    axes = None if g.ndim <= 1 else tuple(range(g.ndim - 1))
    keep = g.ndim > 1

    def norm(a):
        return np.sqrt(np.sum(a * a, axis=axes, keepdims=keep))

    max_norm = np.maximum(norm(w), eps) * clipping
    g_norm = norm(g)
    return np.where(g_norm > max_norm, g * max_norm / np.maximum(g_norm, 1e-6), g)


@pytest.mark.parametrize("shape", [(7,), (5, 4), (3, 3, 2, 6)])
def test_agc_matches_numpy_reference(shape, rng):
    w = rng.normal(0, 1, shape).astype(np.float32)
    w[..., 0] = 0.0  # a zero unit: the eps floor decides its threshold
    g = rng.normal(0, 0.05, shape).astype(np.float32) * rng.choice([0.1, 10.0], shape[-1:])
    got = adaptive_clip_gradients([tf.constant(g)], [tf.Variable(w)], clipping=0.05, eps=1e-3)[0]
    np.testing.assert_allclose(got.numpy(), np_agc(g, w, 0.05, 1e-3), rtol=1e-5, atol=1e-7)


def test_agc_passes_none_and_validates():
    assert adaptive_clip_gradients([None], [tf.Variable([1.0])]) == [None]
    with pytest.raises(ValueError, match="clipping"):
        adaptive_clip_gradients([tf.ones(2)], [tf.ones(2)], clipping=0.0)
    with pytest.raises(ValueError, match="grads"):
        adaptive_clip_gradients([tf.ones(2)], [])


def test_trainer_with_agc_bounds_each_units_step(tiny_model, tiny_data):
    x, y = tiny_data[0][:64], tiny_data[1][:64]
    model = tiny_model()
    lam, lr = 0.01, 1.0
    trainer = Trainer(model, agc_clipping=lam, agc_exclude=("logits",))
    trainer.compile(optimizer=keras.optimizers.SGD(lr))
    before = {v.name: v.numpy().copy() for v in model.trainable_variables}
    trainer.fit(tf.data.Dataset.from_tensors((x, y)), epochs=1, verbose=0)
    kernel = model.get_layer("fc1").kernel
    step = kernel.numpy() - before[kernel.name]
    w_norm = np.maximum(np.linalg.norm(before[kernel.name], axis=0), 1e-3)
    assert np.all(np.linalg.norm(step, axis=0) <= lr * lam * w_norm * (1 + 1e-4))
    # the excluded classifier is not clipped: with lr 1 its step is far larger than the bound
    logits = model.get_layer("logits").kernel
    bound = lr * lam * np.linalg.norm(before[logits.name], axis=0)
    assert np.any(np.linalg.norm(logits.numpy() - before[logits.name], axis=0) > bound)
