"""The shared argument checks: each rule once, each message naming the argument."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfrobust import _validate as V


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -math.inf, np.float32("nan")])
def test_number_refuses_non_finite(bad):
    with pytest.raises(ValueError, match=r"`eps` must be a finite number.*Received: eps="):
        V.number("eps", bad)


@pytest.mark.parametrize("bad", [True, "0.1", None, [0.1]])
def test_number_refuses_non_numbers(bad):
    with pytest.raises(TypeError, match="`eps` must be a number"):
        V.number("eps", bad)


def test_number_bounds_open_and_closed():
    assert V.number("eps", 0.0, minimum=0.0) == 0.0
    with pytest.raises(ValueError, match=r"`eps` must be > 0"):
        V.number("eps", 0.0, minimum=0.0, open_min=True)
    with pytest.raises(ValueError, match=r"`p` must be >= 0 and <= 1"):
        V.number("p", 1.5, minimum=0, maximum=1)
    assert V.number("eps", np.float64(0.25)) == 0.25


def test_number_tensor_checked_only_when_allowed():
    with pytest.raises(TypeError, match="`eps` must be a Python number"):
        V.number("eps", tf.constant(0.1))
    t = tf.constant(0.1)
    assert V.number("eps", t, allow_tensor=True) is t
    with pytest.raises(ValueError, match="`eps` must be a finite"):
        V.number("eps", tf.constant(float("nan")), allow_tensor=True)


def test_integer_accepts_numpy_ints_and_refuses_floats_and_bools():
    assert V.integer("steps", np.int64(7), minimum=1) == 7
    for bad in (3.0, True, "3"):
        with pytest.raises(TypeError, match="`steps` must be an int"):
            V.integer("steps", bad, minimum=1)
    with pytest.raises(ValueError, match=r"`steps` must be an int >= 1\. Received: steps=0"):
        V.integer("steps", 0, minimum=1)


def test_seed_rules():
    assert V.seed(None) is None
    assert V.seed(np.uint32(5)) == 5
    for bad in (-1, 2**63, 1.0, True):
        with pytest.raises(ValueError, match="`seed` must be None or an int"):
            V.seed(bad)


def test_clip_range_needs_order_and_finite_ends():
    assert V.clip_range(0, 255) == (0.0, 255.0)
    with pytest.raises(ValueError, match="`clip_min` must be smaller than `clip_max`"):
        V.clip_range(1.0, 1.0)
    with pytest.raises(ValueError, match="`clip_max` must be a finite"):
        V.clip_range(0.0, float("inf"))


def test_fraction_and_choice_and_boolean():
    assert V.fraction("p", 1.0) == 1.0
    with pytest.raises(ValueError, match=r"`p` must be >= 0.0 and < 1.0"):
        V.fraction("p", 1.0, open_max=True)
    with pytest.raises(ValueError, match=r"`norm` must be one of 'linf', 'l2'\. Received: norm='l1'"):
        V.choice("norm", "l1", ("linf", "l2"))
    with pytest.raises(TypeError, match="`flag` must be a bool"):
        V.boolean("flag", 1)


def test_images_checks_dtype_finiteness_range_and_model_shape():
    x = np.zeros((2, 4, 4, 1), np.float32)
    assert V.images(x, input_shape=(4, 4, 1)).dtype == np.float32
    with pytest.raises(TypeError, match=r"`x` must hold floating-point images.*x.dtype=uint8"):
        V.images(x.astype(np.uint8))
    with pytest.raises(ValueError, match=r"`x` must be a batch of the model's input shape \[N, 28, 28, 1\]"):
        V.images(x, input_shape=(28, 28, 1))
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="`x` must be finite"):
        V.images(bad)
    with pytest.raises(ValueError, match=r"`x` must lie in \[clip_min, clip_max\] = \[0.0, 1.0\]"):
        V.images(x + 2.0)
    assert V.images(x + 200.0, clip_min=0, clip_max=255).max() == 200.0


def test_labels_against_num_classes_and_one_hot():
    np.testing.assert_array_equal(V.labels(np.eye(3)[[2, 0]], num_classes=3), [2, 0])
    with pytest.raises(ValueError, match=r"`y` must be class indices in \[0, 10\)\. Received: y in \[0, 10]"):
        V.labels(np.array([0, 10]), num_classes=10)
    with pytest.raises(ValueError, match="`y` must have one label per example"):
        V.labels(np.array([0, 1]), n=3)
    with pytest.raises(TypeError, match="`y` must hold integer class indices"):
        V.labels(np.array([0.0, 1.0]))


def test_finite_array_counts_bad_values():
    with pytest.raises(ValueError, match=r"`representative_data` must be finite\. Received: .* 2 NaN/inf"):
        V.finite_array("representative_data", [1.0, np.nan, np.inf])


def test_logits_refuses_or_converts_probabilities():
    z = np.array([[2.0, -1.0, 0.5], [0.0, 3.0, 1.0]], np.float32)
    p = tf.nn.softmax(z).numpy()
    assert V.logits(z) is z
    with pytest.raises(ValueError, match="look like probabilities"):
        V.logits(p)
    converted = V.logits(p, action="convert").numpy()
    # log(softmax(z)) = z - logsumexp(z): the same logits up to a per-row constant.
    np.testing.assert_allclose(converted - converted[:, :1], z - z[:, :1], atol=1e-5)
