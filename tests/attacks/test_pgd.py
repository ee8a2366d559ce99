import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tfrobust import attacks
from tfrobust._keras import keras


class Linear(tf.Module):
    """logits = flatten(x) @ W + b with hand-chosen weights."""

    def __init__(self, w, b=None):
        super().__init__()
        self.w = tf.constant(w, tf.float32)
        self.b = tf.constant(np.zeros(w.shape[1]) if b is None else b, tf.float32)

    def __call__(self, x):
        return tf.reshape(x, [tf.shape(x)[0], -1]) @ self.w + self.b


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _linear_ce_grad(w, b, x, y):
    """NumPy reference: d CE(xW + b, y) / dx = (softmax(z) - onehot(y)) W^T."""
    flat = x.reshape(len(x), -1)
    p = _softmax(flat @ w + b)
    p[np.arange(len(y)), y] -= 1.0
    return (p @ w.T).reshape(x.shape)


@pytest.fixture(scope="module")
def linear_problem():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 4)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32) * 0.1
    x = rng.uniform(0.2, 0.8, size=(32, 4, 4, 1)).astype(np.float32)
    model = Linear(w, b)
    y = np.argmax(model(x).numpy(), 1)
    return model, w, b, x, y


@pytest.fixture(scope="module")
def mlp_problem(base_seed, train_tiny_mlp):
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, size=(96, 8, 8, 1)).astype(np.float32)
    y = (x[:, :4].mean((1, 2, 3)) > x[:, 4:].mean((1, 2, 3))).astype(np.int64) + 2 * (x[..., :4, :].mean(
        (1, 2, 3)) > 0.5).astype(np.int64)
    return train_tiny_mlp(x, y, seed=base_seed), x, y


def _acc(model, x, y):
    return float(np.mean(np.argmax(np.asarray(model(x)), 1) == y))


def test_fgsm_matches_numpy_reference_on_linear_model(linear_problem):
    model, w, b, x, y = linear_problem
    eps = 0.05
    expected = np.clip(x + eps * np.sign(_linear_ce_grad(w, b, x, y)), 0, 1)
    np.testing.assert_allclose(attacks.fgsm(model, x, y, eps=eps).numpy(), expected, atol=1e-6)
    g = _linear_ce_grad(w, b, x, y)
    g_unit = g / np.linalg.norm(g.reshape(len(g), -1), axis=1).reshape(-1, 1, 1, 1)
    np.testing.assert_allclose(attacks.fgsm(model, x, y, eps=eps, norm="l2").numpy(),
                               np.clip(x + eps * g_unit, 0, 1), atol=1e-6)


def test_pgd_first_step_without_random_start_is_fgsm(linear_problem):
    model, _, _, x, y = linear_problem
    one = attacks.pgd(model, x, y, eps=0.05, step_size=0.05, steps=1, random_start=False)
    np.testing.assert_allclose(one.numpy(), attacks.fgsm(model, x, y, eps=0.05).numpy(), atol=1e-7)


def test_attack_provably_flips_hand_weighted_linear_model():
    # Two classes, z0 - z1 = 2 w.x - 2 w.c with w = +-1: moving every pixel by eps changes the
    # margin by 2 * eps * |w|_1 = 32 eps, so eps = 0.1 must flip any point with margin < 3.2.
    w1 = np.where(np.arange(16) % 2 == 0, 1.0, -1.0).astype(np.float32)
    w = np.stack([w1, -w1], 1)
    model = Linear(w)
    x = np.full((4, 4, 4, 1), 0.5, np.float32)
    x += (np.linspace(0.01, 0.04, 4)[:, None] * w1).reshape(4, 4, 4, 1).astype(np.float32)
    y = np.argmax(model(x).numpy(), 1)
    assert np.all(y == 0)
    for norm, eps in (("linf", 0.1), ("l2", 1.0)):
        x_fgsm = attacks.fgsm(model, x, y, eps=eps, norm=norm)
        x_pgd = attacks.pgd(model, x, y, eps=eps, step_size=eps / 4, steps=10, norm=norm)
        assert _acc(model, x_fgsm, y) == 0.0 and _acc(model, x_pgd, y) == 0.0
        # targeted towards class 1 succeeds too
        x_t = attacks.pgd(model, x, np.ones(4, np.int64), eps=eps, step_size=eps / 4, steps=10, norm=norm,
                          targeted=True)
        assert np.all(np.argmax(model(x_t).numpy(), 1) == 1)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("attack", ["fgsm", "pgd", "pgd_restarts"])
def test_perturbation_stays_in_ball_and_clip_range(mlp_problem, norm, attack):
    model, x, y = mlp_problem
    eps = 0.1 if norm == "linf" else 1.0
    ref = x.clip(0.05, 0.95)
    if attack == "fgsm":
        x_adv = attacks.fgsm(model, ref, y, eps=eps, norm=norm, clip_min=0.05, clip_max=0.95)
    else:
        x_adv = attacks.pgd(model, ref, y, eps=eps, step_size=eps / 3, steps=5, norm=norm,
                            restarts=3 if attack == "pgd_restarts" else 1, clip_min=0.05, clip_max=0.95)
    x_adv = x_adv.numpy()
    delta = (x_adv - ref).reshape(len(x), -1)
    if norm == "linf":
        assert np.abs(delta).max() <= eps + 1e-6
    else:
        assert np.linalg.norm(delta, axis=1).max() <= eps * (1 + 1e-5)
    assert x_adv.min() >= 0.05 and x_adv.max() <= 0.95


def test_fgsm_respects_clip_range_with_points_on_the_boundary(mlp_problem):
    model, x, y = mlp_problem
    x = np.round(x)  # all pixels at 0 or 1
    x_adv = attacks.fgsm(model, x, y, eps=0.3).numpy()
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0 and np.abs(x_adv - x).max() <= 0.3 + 1e-6


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_eps_zero_returns_x(mlp_problem, norm):
    model, x, y = mlp_problem
    np.testing.assert_array_equal(attacks.pgd(model, x, y, eps=0.0, step_size=0.1, steps=3, norm=norm), x)
    np.testing.assert_array_equal(attacks.fgsm(model, x, y, eps=0.0, norm=norm), x)


def test_more_steps_and_restarts_never_raise_robust_accuracy(mlp_problem):
    model, x, y = mlp_problem
    kw = dict(eps=0.04, step_size=0.01, early_stop=True, seed=3)
    accs = [_acc(model, attacks.pgd(model, x, y, steps=s, **kw), y) for s in (1, 3, 10)]
    assert accs[0] >= accs[1] >= accs[2]
    restarts = [_acc(model, attacks.pgd(model, x, y, steps=3, restarts=r, **kw), y) for r in (1, 4)]
    assert restarts[0] >= restarts[1]
    # and PGD is at least as strong as FGSM here, and clearly lowers accuracy
    assert accs[2] < _acc(model, x, y)


def test_restarts_keep_per_example_worst_case_without_early_stop(mlp_problem):
    model, x, y = mlp_problem
    kw = dict(eps=0.03, step_size=0.01, steps=3, seed=5)
    single = np.argmax(model(attacks.pgd(model, x, y, **kw)).numpy(), 1) != y
    multi = np.argmax(model(attacks.pgd(model, x, y, restarts=3, **kw)).numpy(), 1) != y
    assert np.all(multi[single])  # every example fooled by restart 0 stays fooled


def test_y_none_uses_model_predictions(mlp_problem):
    model, x, _ = mlp_problem
    pred = np.argmax(model(x).numpy(), 1)
    a = attacks.pgd(model, x, eps=0.05, step_size=0.01, steps=4, seed=1)
    b = attacks.pgd(model, x, pred, eps=0.05, step_size=0.01, steps=4, seed=1)
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-7)


def test_one_hot_labels_accepted(mlp_problem):
    model, x, y = mlp_problem
    a = attacks.fgsm(model, x, y, eps=0.05)
    b = attacks.fgsm(model, x, np.eye(4, dtype=np.float32)[y], eps=0.05)
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_seed_makes_random_start_reproducible(mlp_problem):
    model, x, y = mlp_problem
    a = attacks.pgd(model, x, y, eps=0.05, step_size=0.01, steps=2, seed=7)
    b = attacks.pgd(model, x, y, eps=0.05, step_size=0.01, steps=2, seed=7)
    c = attacks.pgd(model, x, y, eps=0.05, step_size=0.01, steps=2, seed=8)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), c.numpy())


def test_float64_input_is_attacked_and_returned_in_float64(mlp_problem):
    model, x, y = mlp_problem
    x64 = x.astype(np.float64)
    x_adv = attacks.pgd(model, x64, y, eps=0.05, step_size=0.02, steps=3)
    assert x_adv.dtype == tf.float64
    assert np.abs(x_adv.numpy() - x64).max() <= 0.05 + 1e-12
    assert _acc(model, x_adv.numpy().astype(np.float32), y) < _acc(model, x, y)


def test_loss_variants_all_lower_accuracy(mlp_problem):
    model, x, y = mlp_problem
    clean = _acc(model, x, y)
    for loss in ("ce", "margin", "dlr"):
        assert _acc(model, attacks.pgd(model, x, y, eps=0.05, step_size=0.01, steps=10, loss=loss), y) < clean


def test_repeated_calls_do_not_retrace(mlp_problem):
    model, x, y = mlp_problem
    attacks.pgd(model, x, y, eps=0.05, step_size=0.01, steps=2)
    from tfrobust.attacks.shared import CACHE

    table = CACHE._by_owner[model]
    fns = list(table.values())
    before = [f.experimental_get_tracing_count() for f in fns]
    for eps in (0.01, 0.02, 0.03):  # new eps values and a smaller batch: no new trace
        attacks.pgd(model, x[:50], y[:50], eps=eps, step_size=0.01, steps=4)
    assert [f.experimental_get_tracing_count() for f in fns] == before and len(table) == len(fns)


def test_usable_inside_tf_function_train_step_with_tensor_eps(mlp_problem):
    model, x, y = mlp_problem
    eps_var = tf.Variable(0.05)
    opt = keras.optimizers.SGD(0.0)

    @tf.function
    def train_step(xb, yb):
        x_adv = attacks.pgd(model, xb, yb, eps=eps_var, step_size=eps_var / 4, steps=3)
        x_fgsm = attacks.fgsm(model, xb, yb, eps=eps_var)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(yb, model(x_adv)))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return x_adv, x_fgsm

    x_adv, x_fgsm = train_step(tf.constant(x), tf.constant(y))
    assert np.abs(x_adv.numpy() - x).max() <= 0.05 + 1e-6 and np.abs(x_fgsm.numpy() - x).max() <= 0.05 + 1e-6
    eps_var.assign(0.0)  # the variable is read at run time, not baked in at trace time
    x_adv, _ = train_step(tf.constant(x), tf.constant(y))
    np.testing.assert_array_equal(x_adv.numpy(), x)


def test_usable_under_jit_compile(mlp_problem):
    model, x, y = mlp_problem
    fn = tf.function(lambda xb, yb: attacks.pgd(model, xb, yb, eps=0.05, step_size=0.01, steps=3, seed=1),
                     jit_compile=True)
    x_adv = fn(tf.constant(x), tf.constant(y)).numpy()
    assert np.abs(x_adv - x).max() <= 0.05 + 1e-6 and 0 <= x_adv.min() and x_adv.max() <= 1
    assert _acc(model, x_adv, y) < _acc(model, x, y)


def test_usable_in_mirrored_strategy_replicas():
    # Two logical CPU devices must be configured before TensorFlow starts: use a fresh process.
    script = textwrap.dedent("""
        import os
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from tfrobust import attacks
        from tfrobust._keras import keras
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
            opt = keras.optimizers.SGD(0.1)
        x = np.random.default_rng(0).uniform(size=(16, 4, 4, 1)).astype("float32")
        y = np.arange(16) % 3
        ds = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices((x, y)).batch(16))

        @tf.function
        def step(batch):
            def replica(xb, yb):
                x_adv = attacks.pgd(model, xb, yb, eps=0.1, step_size=0.05, steps=3, early_stop=True)
                x_f = attacks.fgsm(model, xb, yb, eps=0.1)
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(yb, model(x_adv)))
                grads = tape.gradient(loss, model.trainable_variables)
                opt.apply_gradients(zip(grads, model.trainable_variables))
                return tf.reduce_max(tf.abs(x_adv - xb)) + 0 * tf.reduce_max(tf.abs(x_f - xb))
            return strategy.run(replica, args=batch)

        for batch in ds:
            per = strategy.experimental_local_results(step(batch))
            print("MAXDELTA", max(float(v) for v in per), len(per))
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("MAXDELTA")][0]
    delta, replicas = float(line.split()[1]), int(line.split()[2])
    assert replicas == 2 and 0.0 < delta <= 0.1 + 1e-6


# ----------------------------------------------------------------------------- argument validation
@pytest.mark.parametrize("kwargs, error, fragment", [
    (dict(eps=-0.1), ValueError, "eps"),
    (dict(eps=float("nan")), ValueError, "eps"),
    (dict(step_size=-1.0), ValueError, "step_size"),
    (dict(steps=-1), ValueError, "steps"),
    (dict(steps=2.5), ValueError, "steps"),
    (dict(norm="l3"), ValueError, "norm"),
    (dict(restarts=0), ValueError, "restarts"),
    (dict(loss="hinge"), ValueError, "loss"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(clip_min=1.0, clip_max=0.0), ValueError, "clip_min"),
    (dict(random_start="yes"), TypeError, "random_start"),
    (dict(targeted=1), TypeError, "targeted"),
    (dict(eps="0.1"), TypeError, "eps"),
])
def test_pgd_bad_arguments_raise_naming_them(mlp_problem, kwargs, error, fragment):
    model, x, y = mlp_problem
    args = {"eps": 0.1, "step_size": 0.01, "steps": 2, **kwargs}
    with pytest.raises(error, match=fragment) as info:
        attacks.pgd(model, x, y, **args)
    assert "Received:" in str(info.value)


def test_bad_inputs_raise_clearly(mlp_problem):
    model, x, y = mlp_problem
    kw = dict(eps=0.1, step_size=0.01, steps=1)
    with pytest.raises(TypeError, match="uint8"):
        attacks.pgd(model, (x * 255).astype(np.uint8), y, **kw)
    with pytest.raises(TypeError, match="uint8"):
        attacks.fgsm(model, (x * 255).astype(np.uint8), y, eps=0.1)
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        attacks.pgd(model, bad, y, **kw)
    with pytest.raises(ValueError, match="clip_min, clip_max"):
        attacks.fgsm(model, x * 255.0, y, eps=0.1)  # [0, 255] images with the default [0, 1] range
    with pytest.raises(ValueError, match="y"):
        attacks.pgd(model, x, y[:-1], **kw)
    with pytest.raises(ValueError, match="y"):
        attacks.pgd(model, x, y.reshape(-1, 1, 1), **kw)
    with pytest.raises(TypeError, match="y"):
        attacks.pgd(model, x, y.astype(np.float32), **kw)
    with pytest.raises(ValueError, match="target"):
        attacks.pgd(model, x, None, targeted=True, **kw)
    with pytest.raises(TypeError, match="model_fn"):
        attacks.fgsm("model", x, y, eps=0.1)
    with pytest.raises(ValueError, match="logits"):
        attacks.fgsm(lambda t: tf.reshape(t, [-1, 8, 8]), x, y, eps=0.1)
    with pytest.raises(ValueError, match="x"):
        attacks.fgsm(model, np.zeros(5, np.float32), None, eps=0.1)
