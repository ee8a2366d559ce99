import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from tfrobust.trainers import (
    label_smoothing_fn,
    mixup,
    mixup_fn,
    random_erasing,
    random_erasing_fn,
    sample_beta,
    smooth_labels,
)


def test_mixup_outputs_are_convex_pairs_with_matching_label_weights():
    n = 8
    # image i is the constant i / n and its label is i, so every output reveals its partner
    values = np.arange(n, dtype=np.float32)[:, None, None, None] / n
    x = tf.constant(values * np.ones((n, 4, 4, 1), np.float32))
    y = tf.range(n)
    for seed in range(20):
        x_mix, y_mix = mixup(x, y, alpha=0.4, num_classes=n, seed=seed)
        x_mix, y_mix = x_mix.numpy(), y_mix.numpy()
        np.testing.assert_allclose(y_mix.sum(axis=1), 1.0, rtol=1e-6)
        lam = y_mix[np.arange(n), np.arange(n)]  # weight of the image's own label
        partner = np.where(lam < 1 - 1e-6, np.argmax(y_mix - np.eye(n) * lam[:, None], axis=1), np.arange(n))
        expected = lam * np.arange(n) / n + (1 - lam) * partner / n
        np.testing.assert_allclose(x_mix[:, 0, 0, 0], expected, atol=1e-6)
        # one lambda per batch (reference code): every example with a foreign partner has the same one
        mixed = partner != np.arange(n)
        if mixed.any():
            assert np.allclose(lam[mixed], lam[mixed][0], atol=1e-6)
            assert 0.0 <= lam[mixed][0] <= 1.0
        assert sorted(partner[mixed].tolist()) == sorted(np.arange(n)[mixed].tolist())  # a permutation


@pytest.mark.parametrize("alpha", [0.2, 1.0, 2.0])
def test_mixup_lambda_follows_beta_alpha_alpha(alpha):
    draws = sample_beta(alpha, (4000,), seed=7).numpy()
    assert draws.min() >= 0.0 and draws.max() <= 1.0
    assert scipy.stats.kstest(draws, scipy.stats.beta(alpha, alpha).cdf).pvalue > 1e-3


def test_mixup_fn_maps_a_batched_dataset():
    ds = tf.data.Dataset.from_tensor_slices((tf.random.uniform((32, 4, 4, 1)), tf.range(32) % 3)).batch(8)
    x, y = next(iter(ds.map(mixup_fn(0.3, num_classes=3))))
    assert x.shape == (8, 4, 4, 1) and y.shape == (8, 3)


def _erased_boxes(out, fill_marker):
    """Per image: None (untouched) or (height, width) of the erased rectangle."""
    boxes = []
    for img in out:
        changed = np.any(img != fill_marker, axis=-1)
        if not changed.any():
            boxes.append(None)
            continue
        rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
        h, w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
        # uniform random fill can equal the marker only with probability 0, so the box is solid
        assert changed[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all() and changed.sum() == h * w
        boxes.append((h, w))
    return boxes


def _reference_boxes(rng, n, size, sl, sh, r1):
    """Zhong et al., Algorithm 1, lines 5-14, for ``n`` images that are erased (p = 1)."""
    boxes = []
    for _ in range(n):
        while True:
            s_e = rng.uniform(sl, sh) * size * size
            r_e = rng.uniform(r1, 1 / r1)
            h_e, w_e = int(round(np.sqrt(s_e * r_e))), int(round(np.sqrt(s_e / r_e)))
            x_e, y_e = rng.integers(0, size), rng.integers(0, size)
            if x_e + w_e <= size and y_e + h_e <= size:
                boxes.append((h_e, w_e))
                break
    return boxes


def test_random_erasing_respects_probability_area_and_aspect_ranges():
    n, size = 2000, 32
    x = tf.fill((n, size, size, 3), 5.0)  # outside the fill range [0, 1]: erased pixels are visible
    out = random_erasing(x, p=0.5, sl=0.02, sh=0.4, r1=0.3, seed=1).numpy()
    boxes = _erased_boxes(out, 5.0)
    erased = [b for b in boxes if b is not None]
    # binomial(2000, 0.5 * P(fit)), sd <= sqrt(2000 / 4) = 22.4; P(fit) is close to 1 for these
    # ranges on 32x32. Bound, not a measurement: 5 sd either side of 1000 P(fit) for
    # 0.96 <= P(fit) <= 1 (the upper end was 1050, only 2.2 sd, before seeds were fixed).
    assert 850 <= len(erased) <= 1112
    areas = np.array([h * w for h, w in erased]) / size**2
    ratios = np.array([h / w for h, w in erased])
    # rounding H_e and W_e to whole pixels moves area and ratio slightly past the continuous bounds
    assert areas.min() >= 0.02 * 0.6 and areas.max() <= 0.4 * 1.15
    assert ratios.min() >= 0.3 * 0.75 and ratios.max() <= (1 / 0.3) / 0.75
    # Algorithm 1 rejects rectangles that do not fit, which favours small ones: compare with a
    # NumPy run of the algorithm as written (sequential while loop) instead of E[U(sl, sh)].
    ref = _reference_boxes(np.random.default_rng(0), 4000, size, 0.02, 0.4, 0.3)
    ref_areas = np.array([h * w for h, w in ref]) / size**2
    assert areas.mean() == pytest.approx(ref_areas.mean(), abs=0.012)
    assert np.mean(np.log(ratios)) == pytest.approx(np.mean([np.log(h / w) for h, w in ref]), abs=0.06)
    fill = out[out != 5.0]
    assert fill.min() >= 0.0 and fill.max() <= 1.0 and fill.std() > 0.2  # random values, not a constant


def test_random_erasing_p_zero_is_identity_and_p_one_erases_every_image():
    x = tf.fill((50, 28, 28, 1), 5.0)
    np.testing.assert_array_equal(random_erasing(x, p=0.0).numpy(), x.numpy())
    assert all(b is not None for b in _erased_boxes(random_erasing(x, p=1.0, seed=3).numpy(), 5.0))
    single = random_erasing(tf.fill((28, 28, 1), 5.0), p=1.0, seed=3)
    assert single.shape == (28, 28, 1)
    ds = tf.data.Dataset.from_tensor_slices((x, tf.zeros(50, tf.int32))).batch(10)
    xb, _ = next(iter(ds.map(random_erasing_fn(1.0))))
    assert np.any(xb.numpy() != 5.0)


def test_label_smoothing_formula():
    y = tf.constant([0, 2])
    got = smooth_labels(y, smoothing=0.1, num_classes=4).numpy()
    np.testing.assert_allclose(got, 0.9 * np.eye(4)[[0, 2]] + 0.025, rtol=1e-6)
    _, y2 = label_smoothing_fn(0.2, num_classes=4)(tf.zeros((2, 1)), y)
    np.testing.assert_allclose(y2.numpy().sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("fn, kwargs, match", [
    (mixup_fn, {"alpha": 0.0}, "alpha"),
    (mixup_fn, {"alpha": 0.2, "num_classes": 1}, "num_classes"),
    (random_erasing_fn, {"p": 1.5}, "p"),
    (random_erasing_fn, {"sl": 0.5, "sh": 0.1}, "sl"),
    (random_erasing_fn, {"r1": 0.0}, "r1"),
    (random_erasing_fn, {"value_range": (1.0, 0.0)}, "value_range"),
    (label_smoothing_fn, {"smoothing": -0.1}, "smoothing"),
])
def test_bad_arguments_raise(fn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fn(**kwargs)


def test_integer_images_and_missing_num_classes_are_refused():
    with pytest.raises(TypeError, match="x"):
        random_erasing(tf.zeros((1, 4, 4, 1), tf.uint8))
    with pytest.raises(ValueError, match="num_classes"):
        mixup(tf.zeros((2, 4, 4, 1)), tf.constant([0, 1]), alpha=0.2)
