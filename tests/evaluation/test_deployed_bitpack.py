"""The bit-packed binary C program, compiled once and attacked as deployed (issue 14, item 4)."""

import dataclasses
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tfrobust import evaluation, utils
from tfrobust._keras import keras
from tfrobust.data import as_tf_dataset
from tfrobust.evaluation import robust_accuracy_deployed
from tfrobust.evaluation.shared import snap_to_inputs
from tfrobust.layers import BinaryDense
from tfrobust.tflite_tools import BitpackRunner, CompileError, export_binary_c, generate_c, run_on_host

L = keras.layers
EPS = 0.1  # 25.5 pixel steps: rounding a float candidate to pixels may leave the ball

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


@pytest.fixture(scope="module")
def bnn(fashion_train, fashion_test, base_seed):
    """A small seeded BNN (784-64-64-10, binary activations), one epoch; its C program compiled once."""
    utils.set_seed(base_seed)  # module fixture: runs before the per-test seed
    x, y = fashion_train[0][:3000], fashion_train[1][:3000]
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Flatten(),
        BinaryDense(64, mode="bwn", use_bias=False),
        L.BatchNormalization(momentum=0.9),
        BinaryDense(64, mode="bwn", binary_inputs=True, use_bias=False),
        L.BatchNormalization(momentum=0.9),
        BinaryDense(10, mode="binaryconnect", binary_inputs=True),
        L.BatchNormalization(momentum=0.9),
    ])
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(as_tf_dataset(x, y, batch_size=64, shuffle=True, seed=0), epochs=1, verbose=0)
    prog = generate_c(model, name="bnn")
    runner = BitpackRunner(prog)
    xt, yt = fashion_test[0][:400], fashion_test[1][:400]
    return model, prog, runner, xt, yt


@pytest.fixture(scope="module")
def crafted(bnn):
    """32 test images and the Keras model's FGSM examples for them (one eager gradient, no tracing)."""
    model, _, _, x, y = bnn
    x, y = x[:32], y[:32]
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = keras.losses.sparse_categorical_crossentropy(y, model(xt, training=False), from_logits=True)
    step = EPS * np.sign(tape.gradient(loss, xt).numpy())
    return x, y, np.clip(x + step, 0, 1).astype(np.float32)


def _pred(runner, x):
    return runner.run(runner.quantize_input(x)).argmax


def test_runner_compiles_once_and_matches_keras_and_the_host_driver(bnn, tmp_path):
    model, prog, runner, x, _ = bnn
    calls = runner.calls
    logits = runner.predict(x)
    assert runner.calls == calls + 1  # one C call per batch, no recompilation
    keras_logits = np.asarray(model(tf.constant(x), training=False))
    # The documented tolerance of the bit-packed path (tests/tflite_tools/test_bitpack.py): integer
    # pre-activations equal, logits within float rounding of the last scale and bias.
    np.testing.assert_allclose(logits, keras_logits, rtol=1e-4, atol=1e-4)
    top2 = np.sort(keras_logits, 1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2e-3
    assert clear.mean() > 0.8
    np.testing.assert_array_equal(logits.argmax(1)[clear], keras_logits.argmax(1)[clear])
    # The same program as run_on_host (compile + driver per call): bit for bit.
    pixels = np.round(x * 255).astype(np.uint8)
    host = run_on_host(prog, pixels)
    run = runner.run(pixels)
    np.testing.assert_array_equal(run.logits, host.logits)
    np.testing.assert_array_equal(run.preact, host.preact)
    np.testing.assert_array_equal(run.argmax, host.argmax)
    # From the exported files (folder or .c path): the header carries the input scale.
    export_binary_c(model, tmp_path / "fw", name="bnn")
    for path in (tmp_path / "fw", tmp_path / "fw" / "bnn.c"):
        from_files = BitpackRunner(path, build_dir=tmp_path / "build")
        assert from_files.input_scale == pytest.approx(1 / 255)
        np.testing.assert_array_equal(from_files.predict(x[:50]), logits[:50])
    assert (tmp_path / "build" / "bnn.c").is_file()


def test_runner_is_a_model_fn_in_and_out_of_graphs(bnn):
    _, _, runner, x, _ = bnn
    eager = runner(x[:16])
    assert isinstance(eager, tf.Tensor) and eager.dtype == tf.float32 and eager.shape == (16, 10)
    graph = tf.function(lambda t: runner(t))(tf.constant(x[:16]))
    np.testing.assert_array_equal(graph.numpy(), eager.numpy())
    # flat inputs are accepted too; the runner rounds floats to pixels half away from zero
    np.testing.assert_array_equal(runner.predict(x[:4].reshape(4, -1)), eager.numpy()[:4])
    half = np.full((1, 28, 28, 1), 0.5 / 255, np.float32)
    np.testing.assert_array_equal(runner.predict(half), runner.run(np.ones((1, 28, 28, 1), np.uint8)).logits)


def test_runner_errors_are_clear(bnn, tmp_path):
    _, prog, runner, x, _ = bnn
    with pytest.raises(TypeError, match="float images"):
        runner.predict(np.round(x[:2] * 255).astype(np.uint8))
    with pytest.raises(ValueError, match=r"shape \[N, 28, 28, 1\]"):
        runner.predict(x[:2, :14])
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        runner.predict(x[:2] * 255)
    with pytest.raises(ValueError, match="finite"):
        runner.predict(np.full((1, 28, 28, 1), np.nan, np.float32))
    with pytest.raises(TypeError, match="uint8"):
        runner.run(x[:2])
    with pytest.raises(CompileError, match="not found"):
        BitpackRunner(prog, cc="no-such-compiler-tfr")
    broken = dataclasses.replace(prog, source=prog.source + "\nint oops(void) { return undeclared_name; }\n")
    with pytest.raises(CompileError, match="undeclared_name") as info:
        BitpackRunner(broken)
    assert "failed" in str(info.value)
    with pytest.raises(FileNotFoundError, match="export_binary_c"):
        BitpackRunner(tmp_path / "missing.c")
    with pytest.raises(ValueError, match="exactly one"):
        BitpackRunner(tmp_path)
    with pytest.raises(TypeError, match="BinaryCProgram"):
        BitpackRunner(42)
    with pytest.raises(ValueError, match="input_scale"):
        BitpackRunner(prog, input_scale=0)


@pytest.mark.parametrize("norm, eps", [("linf", EPS), ("l2", 1.0)])
def test_snapping_lands_on_pixels_inside_the_ball_and_the_clip_range(rng, norm, eps):
    x = (rng.integers(0, 256, size=(64, 28, 28, 1)) / 255).astype(np.float32)
    d = rng.uniform(-1, 1, size=x.shape).astype(np.float32)
    if norm == "linf":
        cand = np.clip(x + eps * np.sign(d), 0, 1)
    else:
        flat = d.reshape(64, -1)
        cand = np.clip(x + eps * (flat / np.linalg.norm(flat, axis=1, keepdims=True)).reshape(x.shape), 0, 1)
    snapped = snap_to_inputs(x, cand, eps, norm, 0.0, 1.0, (1 / 255, 0, 0, 255))
    q = snapped.astype(np.float64) * 255
    np.testing.assert_allclose(q, np.round(q), atol=1e-3)  # on the pixel grid the program receives
    diff = (snapped.astype(np.float64) - x).reshape(64, -1)
    size = np.abs(diff).max(1) if norm == "linf" else np.linalg.norm(diff, axis=1)
    assert np.all(size <= eps * (1 + 1e-5) + 1e-6)
    assert snapped.min() >= 0 and snapped.max() <= 1
    if norm == "linf":  # nothing is lost but the half step: 25 of 25.5 pixel steps
        assert np.round(np.abs(diff) * 255).max() == 25


def test_deployed_evaluation_on_the_c_program_confirms_every_success(bnn, crafted):
    model, _, runner, _, _ = bnn
    x, y, transfer = crafted
    # Transfer candidates: the Keras attack's perturbations doubled. They fool the C program more
    # often than their projection into the ball does; the count must be the program's, on the
    # snapped pixels. Then APGD through the C program and Square on it alone.
    far = np.clip(x + 2 * (transfer - x), 0, 1)
    calls = runner.calls
    report = robust_accuracy_deployed(runner, model, x, y, eps=EPS, steps=5, targets=0, square_queries=100,
                                      transfer_examples=far, batch_size=64)
    assert isinstance(report, evaluation.RobustnessReport)
    assert runner.calls > calls  # every component ran on the C program
    assert list(report.per_attack) == ["transfer", "apgd-ce", "apgd-dlr", "square"]
    assert report.config["input_quantization"] == [pytest.approx(1 / 255), 0.0, 0.0, 255.0]
    assert "BitpackRunner" in report.config["deployed"]
    clean = _pred(runner, x) == y
    assert report.clean_accuracy == pytest.approx(clean.mean())
    snapped = snap_to_inputs(x, np.clip(far, x - EPS, x + EPS), EPS, "linf", 0.0, 1.0, (1 / 255, 0, 0, 255))
    expected = clean & (_pred(runner, snapped) != y)
    assert report.per_attack["transfer"]["broken"] == int(expected.sum())
    assert (clean & (_pred(runner, far) != y)).sum() > expected.sum()  # the guarded case occurs
    assert report.robust_accuracy <= report.config["transfer_only_robust_accuracy"]
    broken = ~report.robust_mask & clean
    adv = report.adversarial
    assert broken.sum() > 0
    assert broken.sum() == sum(r["broken"] for r in report.per_attack.values())
    # every counted success: the C program misclassifies it, on the exact pixels it receives,
    # inside the ball (25 pixel steps for eps = 25.5 / 255) and the clip range
    assert np.all(_pred(runner, adv[broken]) != y[broken])
    q_adv, q_x = adv.astype(np.float64) * 255, x.astype(np.float64) * 255
    np.testing.assert_allclose(q_adv[broken], np.round(q_adv[broken]), atol=1e-3)
    assert np.abs(np.round(q_adv) - np.round(q_x)).max() <= 25
    assert np.abs(adv - x).max() <= EPS + 1e-6 and adv.min() >= 0.0 and adv.max() <= 1.0
    assert np.all(_pred(runner, adv[report.robust_mask]) == y[report.robust_mask])


def test_a_binary_c_program_is_compiled_and_evaluated_directly(bnn, crafted):
    model, prog, runner, _, _ = bnn
    x, y, transfer = crafted
    report = robust_accuracy_deployed(prog, model, x, y, eps=0.0, transfer_examples=transfer)
    assert "BitpackRunner" in report.config["deployed"] and list(report.per_attack) == ["transfer"]
    # eps = 0: every candidate snaps back to the image itself, nothing can be broken
    assert report.robust_accuracy == report.clean_accuracy == pytest.approx(np.mean(_pred(runner, x) == y))
    assert report.config["transfer_overstatement"] == 0.0


def test_cli_evaluate_takes_the_c_program(bnn, tmp_path):
    from tfrobust.cli import evaluate

    model, _, runner, x, y = bnn
    export_binary_c(model, tmp_path / "fw", name="bnn")
    model.save(tmp_path / "bnn.keras")
    config = evaluate.Config(model=str(tmp_path / "fw" / "bnn.c"), source=str(tmp_path / "bnn.keras"),
                             out=str(tmp_path / "eval"), eps=0.0, num_examples=16)
    result = evaluate.run(config)  # eps = 0: only the transfer component, no attack to trace
    assert "BitpackRunner" in result["config"]["deployed"]
    assert result["robust_accuracy"] == result["clean_accuracy"] == pytest.approx(
        np.mean(_pred(runner, x[:16]) == y[:16]))
    assert (tmp_path / "eval" / "robustness.json").is_file()
    with pytest.raises(ValueError, match="--source"):
        evaluate.run(dataclasses.replace(config, source=None))
