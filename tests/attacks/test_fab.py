"""FAB-T: the hyperplane projection against a linear program / closed form, and the attack's properties."""

import numpy as np
import pytest
import tensorflow as tf
from scipy.optimize import linprog

from tfrobust import attacks
from tfrobust._keras import keras
from tfrobust.attacks.shared import fab_project_hyperplane as project_hyperplane


def _problem(seed, n=12, scale=1.0):
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 1, (1, n))
    w = rng.normal(0, 1, (1, n)) * scale
    w[0, :2] = 0.0  # zero coordinates must not move
    b = np.array([float(w[0] @ t[0]) + rng.normal(0, 0.5)])
    return t, w, b


def _linf_lp(t, w, b):
    """min s  s.t. -s <= d_i <= s, w.d = b - w.t, 0 <= t + d <= 1 (variables d, s)."""
    n = t.shape[1]
    c = np.r_[np.zeros(n), 1.0]
    a_ub = np.block([[np.eye(n), -np.ones((n, 1))], [-np.eye(n), -np.ones((n, 1))]])
    b_ub = np.zeros(2 * n)
    a_eq = np.r_[w[0], 0.0][None]
    b_eq = [b[0] - float(w[0] @ t[0])]
    bounds = [(-t[0, i], 1 - t[0, i]) for i in range(n)] + [(0, None)]
    res = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
    return res


@pytest.mark.parametrize("seed", range(6))
def test_linf_projection_matches_the_linear_program(seed):
    t, w, b = _problem(seed)
    res = _linf_lp(t, w, b)
    d = project_hyperplane(tf.constant(t, tf.float64), tf.constant(w, tf.float64), tf.constant(b, tf.float64),
                           0.0, 1.0, norm="linf").numpy()
    if res.status == 0:
        assert np.abs(d).max() == pytest.approx(res.x[-1], rel=1e-6, abs=1e-9)
        assert float(w[0] @ (t[0] + d[0])) == pytest.approx(b[0], abs=1e-7)
    else:  # the hyperplane lies outside the box: d goes as far towards it as the box allows
        reach = np.sum(np.where(w[0] > 0, 1 - t[0], t[0]) * np.abs(w[0]))
        assert abs(float(w[0] @ d[0])) == pytest.approx(reach, rel=1e-6)
    assert np.all(t + d >= -1e-12) and np.all(t + d <= 1 + 1e-12)
    assert np.all(d[0, :2] == 0)


@pytest.mark.parametrize("seed", range(6))
def test_l2_projection_is_the_kkt_point(seed):
    """Minimum of |d|_2 on {w.d = r} in a box: d = clip(lam w) for one lam; no smaller d satisfies it."""
    t, w, b = _problem(seed)
    d = project_hyperplane(tf.constant(t, tf.float64), tf.constant(w, tf.float64), tf.constant(b, tf.float64),
                           0.0, 1.0, norm="l2").numpy()[0]
    r = b[0] - float(w[0] @ t[0])
    free = (np.abs(d) > 1e-9) & (t[0] + d > 1e-9) & (t[0] + d < 1 - 1e-9)
    lam = d[free] / w[0, free]
    assert np.allclose(lam, lam[0], rtol=1e-6)  # one multiplier for every coordinate off the box
    if abs(float(w[0] @ d)) < abs(r) - 1e-9:
        pytest.skip("hyperplane outside the box for this draw")
    assert float(w[0] @ d) == pytest.approx(r, abs=1e-8)
    # Without the box the minimum is r w / |w|^2; the box can only make it longer.
    assert np.linalg.norm(d) >= abs(r) / np.linalg.norm(w) - 1e-9


def _linear_model(seed=0, k=4, n=16):
    rng = np.random.default_rng(seed)
    model = keras.Sequential([keras.Input((n,)), keras.layers.Dense(k)])
    model.layers[0].set_weights([rng.normal(0, 1, (n, k)).astype(np.float32),
                                 rng.normal(0, 0.1, k).astype(np.float32)])
    x = rng.uniform(0.3, 0.7, (32, n)).astype(np.float32)
    return model, x


def test_fab_on_a_linear_model_reaches_the_exact_minimal_distance():
    """For linear logits the boundary to target t is a hyperplane: the minimal L-inf distance is
    ``(z_y - z_t) / |W_t - W_y|_1`` while the box is not hit; FAB-T (1 target) must find it within
    its overshoot ``eta`` and never below it (a lower bound for any attack)."""
    model, x = _linear_model()
    w, c = (v.astype(np.float64) for v in model.layers[0].get_weights())
    logits = x @ w + c
    y = logits.argmax(1)
    t = np.argsort(-logits, 1)[:, 1]
    rows = np.arange(len(x))
    wd = (w[:, t] - w[:, y]).T
    need = (logits[rows, y] - logits[rows, t]) / np.abs(wd).sum(1)
    inside = need < 0.25  # every coordinate moves by at most need <= 0.3 from [0.3, 0.7]: no box
    x_adv = attacks.fab_targeted(model, x, y, eps=1.0, targets=1, steps=30).numpy()
    dist = np.abs(x_adv - x).max(1)
    pred = np.asarray(model(x_adv)).argmax(1)
    assert np.all(pred[inside] != y[inside])
    assert np.all(dist[inside] >= need[inside] * (1 - 1e-4))
    assert np.all(dist[inside] <= need[inside] * 1.06)


@pytest.fixture(scope="module")
def mlp_problem(base_seed, train_tiny_mlp):
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, size=(48, 8, 8, 1)).astype(np.float32)
    y = np.argmax(x.reshape(48, 4, 16).mean(2), 1)
    return train_tiny_mlp(x, y, seed=base_seed), x, y


@pytest.mark.parametrize("norm, eps, clip", [("linf", 0.1, (0.0, 1.0)), ("l2", 0.6, (0.0, 1.0)),
                                             ("linf", 25.5, (0.0, 255.0))])
def test_fab_stays_in_ball_and_clip_range_and_breaks_points(mlp_problem, norm, eps, clip):
    model, x, y = mlp_problem
    scale = clip[1]
    if scale != 1.0:  # the same model on 0-255 inputs
        inner = model
        model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255.0), inner])
    xs = x * scale
    x_adv = attacks.fab_targeted(model, xs, y, eps=eps, norm=norm, steps=50, targets=3,
                                 clip_min=clip[0], clip_max=clip[1]).numpy()
    delta = (x_adv - xs).reshape(len(x), -1)
    size = np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    assert np.all(size <= eps * (1 + 1e-5))
    assert x_adv.min() >= clip[0] and x_adv.max() <= clip[1]
    clean = np.asarray(model(xs)).argmax(1) == y
    broken = clean & (np.asarray(model(x_adv)).argmax(1) != y)
    # measured over seeds 0-4 (--seed): 43 to 47 of the 48 correct points broken (>= 89%)
    assert broken.sum() >= 0.3 * clean.sum()


def test_fab_eps_zero_returns_the_input(mlp_problem):
    model, x, y = mlp_problem
    np.testing.assert_array_equal(attacks.fab_targeted(model, x, y, eps=0.0, steps=5, targets=1).numpy(), x)


def test_fab_is_deterministic(mlp_problem):
    model, x, y = mlp_problem
    a = attacks.fab_targeted(model, x, y, eps=0.1, steps=10, targets=2).numpy()
    b = attacks.fab_targeted(model, x, y, eps=0.1, steps=10, targets=2).numpy()
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs, match", [
    ({"eps": -0.1}, "eps"), ({"eps": 0.1, "steps": 0}, "steps"), ({"eps": 0.1, "targets": 4}, "targets"),
    ({"eps": 0.1, "norm": "l1"}, "norm"), ({"eps": 0.1, "eta": 0.5}, "eta"),
    ({"eps": 0.1, "beta": 0.0}, "beta"),
    ({"eps": 0.1, "alpha_max": 1.5}, "alpha_max"), ({"eps": float("nan")}, "eps")])
def test_fab_bad_arguments_name_themselves(mlp_problem, kwargs, match):
    model, x, y = mlp_problem
    with pytest.raises((ValueError, TypeError), match=match):
        attacks.fab_targeted(model, x, y, **kwargs)


def test_fab_refuses_inputs_outside_the_clip_range(mlp_problem):
    model, x, y = mlp_problem
    with pytest.raises(ValueError, match="x"):
        attacks.fab_targeted(model, x * 2.0, y, eps=0.1)


def test_fab_t_is_in_the_attack_table_and_the_autoattack_preset(mlp_problem):
    from tfrobust import evaluation

    attack = attacks.get({"name": "fab-t", "eps": 0.1, "steps": 20})
    assert attacks.get(attack.get_config()) == attack
    stages, skipped = evaluation.plan("autoattack", num_classes=4)
    assert [st.label for st in stages] == ["apgd-ce", "apgd-t", "fab-t", "square"] and not skipped
    assert stages[2].attack["targets"] == 3  # at most K - 1 targets
    model, x, y = mlp_problem
    report = evaluation.robust_accuracy(model, x, y, eps=0.1, preset="autoattack", steps=10, queries=50,
                                        seed=0)
    assert "fab-t" in report.per_attack
    robust, clean = np.asarray(report.robust_mask, bool), np.asarray(model(x)).argmax(1) == y
    assert not np.any(robust & ~clean)
