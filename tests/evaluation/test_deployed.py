import numpy as np
import pytest
import tensorflow as tf

from tfrobust import attacks, evaluation, utils
from tfrobust._keras import keras
from tfrobust.evaluation import robust_accuracy_deployed
from tfrobust.evaluation.shared import ThroughInterpreter
from tfrobust.tflite_tools import TFLiteModel, convert

EPS = 0.05


def _mlp(x, y, seed):
    utils.set_seed(seed)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(32, activation="relu"), keras.layers.Dense(4)])
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=40, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="module")
def problem():
    """A source model and a deployed .tflite converted from it with *other weights in one layer*.

    The file's first layer differs (noise of one weight standard deviation), as when a file is
    re-exported from another checkpoint or a layer changed under compression: examples crafted on
    the source transfer only partly, attacks judged by the file itself find more.
    """
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, size=(200, 8, 8, 1)).astype(np.float32)
    y = np.argmax(x.reshape(200, 4, 16).mean(2), 1)
    source = _mlp(x, y, seed=0)
    changed = keras.models.clone_model(source)
    changed.set_weights(source.get_weights())
    kernel, bias = changed.layers[1].get_weights()
    noise = np.random.default_rng(5).normal(0, np.std(kernel), kernel.shape).astype(np.float32)
    changed.layers[1].set_weights([kernel + noise, bias])
    lite = TFLiteModel(convert(changed, "float"))
    xt, yt = x[:48], y[:48]
    transfer = attacks.apgd(source, xt, yt, eps=EPS, steps=50, seed=0).numpy()
    return source, lite, xt, yt, transfer


def _pred(lite, x):
    return np.argmax(lite.predict(x), 1)


def test_deployed_evaluation_finds_what_transfer_misses_and_confirms_every_success(problem):
    source, lite, x, y, transfer = problem
    report = robust_accuracy_deployed(lite, source, x, y, eps=EPS, steps=30, targets=2, square_queries=500,
                                      transfer_examples=transfer)
    assert isinstance(report, evaluation.RobustnessReport)
    transfer_only = report.config["transfer_only_robust_accuracy"]
    assert report.robust_accuracy <= transfer_only
    assert report.robust_accuracy < transfer_only - 0.05  # transfer alone misses real breaks
    assert report.config["transfer_overstatement"] == pytest.approx(transfer_only - report.robust_accuracy)
    assert list(report.per_attack) == ["transfer", "apgd-ce", "apgd-dlr", "apgd-t", "square"]
    assert report.config["input_quantization"] is None and report.config["attack_eps"] == EPS  # float file
    # every counted success is misclassified by the interpreter and lies in the ball and clip range
    broken = ~report.robust_mask & (_pred(lite, x) == y)
    adv = report.adversarial
    assert broken.sum() == round((report.clean_accuracy - report.robust_accuracy) * len(x))
    assert np.all(_pred(lite, adv[broken]) != y[broken])
    assert np.abs(adv - x).max() <= EPS + 1e-6
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert np.all(_pred(lite, adv[report.robust_mask]) == y[report.robust_mask])
    assert sum(r["broken"] for r in report.per_attack.values()) == broken.sum()
    assert report.to_json() and "deployed" in report.to_markdown()


def test_deployed_evaluation_never_counts_an_unconfirmed_success(problem):
    source, lite, x, y, transfer = problem
    # Examples that fool the source but are judged by the file; and far-away points that fool it
    # only outside the ball: the count is the interpreter's, on the projected candidates.
    rng = np.random.default_rng(0)
    far = np.clip(x + rng.choice([-0.5, 0.5], size=x.shape).astype(np.float32), 0, 1)
    for candidates in (transfer, far):
        report = robust_accuracy_deployed(lite, source, x, y, eps=EPS, steps=5, targets=0, square_queries=0,
                                          transfer_examples=candidates)
        projected = np.clip(x + np.clip(candidates - x, -EPS, EPS), 0, 1)
        expected = int(np.sum((_pred(lite, x) == y) & (_pred(lite, projected) != y)))
        assert report.per_attack["transfer"]["broken"] == expected
    source_fooled = np.argmax(np.asarray(source(transfer)), 1) != y
    file_fooled = _pred(lite, transfer) != y
    assert np.any(source_fooled & ~file_fooled)  # the case being guarded against does occur


def test_through_interpreter_has_the_files_value_and_the_sources_gradient(problem):
    source, lite, x, y, _ = problem
    fn = ThroughInterpreter(lite, source)
    xt = tf.constant(x[:8])
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = fn(xt)
        loss = tf.reduce_sum(out[:, 0])
    np.testing.assert_array_equal(out.numpy(), lite.predict(x[:8]))
    with tf.GradientTape() as tape2:
        tape2.watch(xt)
        ref = tf.reduce_sum(source(xt)[:, 0])
    np.testing.assert_allclose(tape.gradient(loss, xt).numpy(), tape2.gradient(ref, xt).numpy(), atol=1e-6)


def test_square_on_a_masked_int8_file_beats_transfer():
    """An int8 file whose decision is a hard step the source only approximates smoothly."""
    utils.set_seed(0)
    inp = keras.Input((8, 8, 1))
    flat = keras.layers.Flatten()(inp)
    # deployed: class 1 when the pixels above 0.5 add up to 40 (a steep ramp, zero gradient below)
    hard = keras.layers.Lambda(lambda t: tf.clip_by_value(20.0 * (t - 0.5), 0.0, 1.0))(flat)
    count = keras.layers.Lambda(lambda t: tf.reduce_sum(t, axis=1, keepdims=True))(hard)
    logits = keras.layers.Lambda(lambda c: tf.concat([40.0 - c, c - 40.0], axis=1) / 8.0)(count)
    masked = keras.Model(inp, logits)
    rng = np.random.default_rng(0)
    x = rng.uniform(0.42, 0.48, size=(16, 8, 8, 1)).astype(np.float32)
    y = np.zeros(16, np.int64)
    lite = TFLiteModel(convert(masked, "int8", rng.uniform(0, 1, (64, 8, 8, 1)).astype(np.float32)))
    assert np.all(_pred(lite, x) == 0)

    def source(t):  # a smooth, *wrong* approximation: it only looks at the first row
        first_row = tf.reduce_sum(t[:, 0, :, 0], 1, keepdims=True)
        return tf.concat([tf.zeros_like(first_row), first_row - 99.0], 1)

    transfer = attacks.apgd(source, x, y, eps=0.12, steps=20, seed=0).numpy()
    report = robust_accuracy_deployed(lite, source, x, y, eps=0.12, steps=10, targets=0, square_queries=1000,
                                      transfer_examples=transfer)
    assert report.config["transfer_only_robust_accuracy"] == 1.0
    assert report.robust_accuracy == 0.0
    assert report.per_attack["square"]["broken"] == 16
    assert any("Square" in w for w in report.warnings)
    # The file takes int8 pixels: every counted example lies on its input grid (the file sees exactly
    # the example counted) and inside the ball, not half a step outside it after rounding.
    scale, zp, qmin, qmax = lite.input_quantization
    assert (qmin, qmax) == (-128, 127) and report.config["input_quantization"] == [scale, zp, qmin, qmax]
    # the attacks searched the whole-step ball inside eps (their iterates reach the file unrounded)
    assert report.config["attack_eps"] == pytest.approx(np.floor(0.12 / scale + 1e-4) * scale)
    assert 0.12 - scale < report.config["attack_eps"] <= 0.12
    adv = report.adversarial
    seen = (lite.quantize_input(adv).astype(np.float64) - zp) * scale
    np.testing.assert_allclose(seen, adv, atol=1e-6)
    assert np.abs(seen - x).max() <= 0.12 + 1e-6
    assert np.all(_pred(lite, adv) != y)


def test_deployed_evaluation_reuses_a_source_report_and_runs_standard_by_default(problem):
    source, lite, x, y, _ = problem
    src = evaluation.robust_accuracy(source, x, y, eps=EPS, preset="standard", steps=10, seed=0)
    a = robust_accuracy_deployed(lite, source, x, y, eps=EPS, steps=10, targets=0, square_queries=0,
                                 source_report=src)
    assert a.config["source_standard_robust_accuracy"] == src.robust_accuracy
    b = robust_accuracy_deployed(lite, source, x[:16], y[:16], eps=EPS, steps=5, targets=0, square_queries=0)
    assert b.config["source_standard_robust_accuracy"] is not None
    assert b.robust_accuracy <= b.config["transfer_only_robust_accuracy"]


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(eps=-0.1), ValueError, "eps"),
    (dict(eps=0.1, norm="l1"), ValueError, "norm"),
    (dict(eps=0.1, steps=0), ValueError, "steps"),
    (dict(eps=0.1, targets=-1), ValueError, "targets"),
    (dict(eps=0.1, square_queries=-1), ValueError, "square_queries"),
    (dict(eps=0.1, batch_size=0), ValueError, "batch_size"),
    (dict(eps=0.1, seed=None), ValueError, "seed"),
    (dict(eps=0.1, clip_min=1.0, clip_max=0.0), ValueError, "clip_min"),
    (dict(eps=0.1, transfer_examples=np.zeros((3, 8, 8, 1), np.float32)), ValueError, "transfer_examples"),
    (dict(eps=0.1, source_report="report"), TypeError, "source_report"),
])
def test_deployed_bad_arguments_raise(problem, kwargs, error, match):
    source, lite, x, y, _ = problem
    with pytest.raises(error, match=match):
        robust_accuracy_deployed(lite, source, x, y, **kwargs)


def test_deployed_refuses_a_path_with_the_fix(problem, tmp_path):
    source, _, x, y, _ = problem
    with pytest.raises(TypeError, match="TFLiteModel"):
        robust_accuracy_deployed(str(tmp_path / "m.tflite"), source, x, y, eps=0.1)
