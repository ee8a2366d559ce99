"""The CapsNet margin loss against a NumPy transcription of Sabour et al. (2017), Eq. 4."""

import numpy as np
import pytest

from tfrobust import losses
from tfrobust._keras import keras


def _np_margin(t, v, mp=0.9, mm=0.1, lam=0.5):
    return (t * np.maximum(0, mp - v) ** 2 + lam * (1 - t) * np.maximum(0, v - mm) ** 2).sum(-1)


def test_margin_loss_matches_formula(rng):
    v = rng.uniform(size=(6, 10)).astype("float32")
    y = rng.integers(0, 10, size=6)
    t = np.eye(10)[y]
    np.testing.assert_allclose(losses.margin_loss(y, v).numpy(), _np_margin(t, v), rtol=1e-5)
    np.testing.assert_allclose(losses.margin_loss(t, v).numpy(), _np_margin(t, v), rtol=1e-5)  # one-hot
    np.testing.assert_allclose(losses.margin_loss(y[:, None], v).numpy(), _np_margin(t, v), rtol=1e-5)
    custom = losses.margin_loss(y, v, m_plus=0.8, m_minus=0.2, lam=1.0).numpy()
    np.testing.assert_allclose(custom, _np_margin(t, v, 0.8, 0.2, 1.0), rtol=1e-5)


def test_margin_loss_is_zero_inside_the_margins():
    v = np.full((1, 4), 0.05, np.float32)
    v[0, 2] = 0.95
    assert float(losses.margin_loss(np.array([2]), v)[0]) == 0.0
    assert float(losses.margin_loss(np.array([1]), v)[0]) > 0.0


def test_margin_loss_class_reduces_and_round_trips(rng):
    v = rng.uniform(size=(4, 3)).astype("float32")
    y = np.array([0, 1, 2, 1])
    loss = losses.MarginLoss(lam=0.25)
    np.testing.assert_allclose(float(loss(y, v)), _np_margin(np.eye(3)[y], v, lam=0.25).mean(), rtol=1e-5)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(clone, losses.MarginLoss) and clone.get_config() == loss.get_config()


@pytest.mark.parametrize(
    "kwargs, match",
    [({"m_plus": -1.0}, "m_plus"), ({"m_minus": 0.95}, "m_minus"), ({"lam": float("inf")}, "lam")],
)
def test_margin_loss_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        losses.MarginLoss(**kwargs)
