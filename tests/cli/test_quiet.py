"""Quiet start (issue 19, part 6): no TensorFlow start-up noise, no BackupAndRestore warning.

The commands run in fresh processes through the console-script entry point declared in setup.cfg
(``tfrobust_launch:main``), with ``TF_CPP_MIN_LOG_LEVEL`` and ``TFROBUST_TF_LOGS`` removed from
the environment, so the launcher's own settings are what is tested.
"""

import configparser
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tfrobust_launch import STARTUP_NOISE, filtered_stderr, tf_logs_requested

ROOT = Path(__file__).resolve().parents[2]
# What a user must not see: the CUDA probe, TensorFlow's start-up notices, the BackupAndRestore
# warning, and absl INFO lines from checkpointing.
FORBIDDEN = ("cuda", "Unable to register", "TF-TRT", "absl::InitializeLog", "oneDNN",
             "cpu_feature_guard", "must be built", "Sharding callback")


def _entry_point():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    line = next(ln for ln in cfg["options.entry_points"]["console_scripts"].splitlines()
                if ln.strip().startswith("tfrobust "))
    return line.split("=", 1)[1].strip().split(":")


def _tfrobust(*args, env_extra=None, timeout=300):
    module, func = _entry_point()
    code = f"import sys; from {module} import {func} as main; sys.exit(main())"
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TFROBUST_TF_LOGS")}
    env.update({"PYTHONPATH": str(ROOT), **(env_extra or {})})
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def _noise(stderr):
    return [ln for ln in stderr.splitlines() if any(f.lower() in ln.lower() for f in FORBIDDEN)]


@pytest.mark.slow
def test_adversarial_train_command_prints_no_startup_noise_or_backup_warning(tmp_path):
    # --adv: an AdversarialTrainer fitted with BackupAndRestore, which used to warn twice.
    res = _tfrobust("train", "--model=lenet_300_100", "--adv=fgsm", "--epochs=1", "--train_subset=256",
                    "--test_subset=64", f"--out={tmp_path / 'run'}")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "test accuracy:" in res.stdout and "--verbose_tf" not in res.stdout
    assert _noise(res.stderr) == [], res.stderr


def test_verbose_tf_brings_tensorflow_logs_back():
    # On any TensorFlow 2.21 start at least one notice prints (oneDNN, the CUDA probe, or the
    # GPU factories), each preceded by absl's "before InitializeLog" line.
    res = _tfrobust("train", "--verbose_tf", "--help")
    assert res.returncode == 0 and "--epochs" in res.stdout
    assert STARTUP_NOISE.search(res.stderr), res.stderr


def test_tf_logs_requested_by_flag_after_the_command_or_by_env(monkeypatch):
    monkeypatch.delenv("TFROBUST_TF_LOGS", raising=False)
    assert not tf_logs_requested(["tfrobust", "train", "--epochs=1"])
    assert tf_logs_requested(["tfrobust", "train", "--verbose_tf"])
    monkeypatch.setenv("TFROBUST_TF_LOGS", "0")
    assert not tf_logs_requested(["tfrobust", "train"])
    monkeypatch.setenv("TFROBUST_TF_LOGS", "1")
    assert tf_logs_requested(["tfrobust", "train"])


def test_filtered_stderr_drops_known_notices_and_keeps_everything_else(capfd):
    with filtered_stderr():
        os.write(2, b"I0000 00:00:1.0 1 cudart_stub.cc:31] Could not find cuda drivers on your machine\n")
        os.write(2, b"E0000 real_error.cc:1] something the user must see\n")
        print("python warning line", file=sys.stderr)
    err = capfd.readouterr().err
    assert "cudart_stub" not in err
    assert "something the user must see" in err and "python warning line" in err


MIRRORED = textwrap.dedent("""
    import json, os
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfrobust import models, utils
    from tfrobust._keras import keras
    from tfrobust.trainers import Distiller

    tf.config.experimental.enable_op_determinism()
    rng = np.random.default_rng(0)
    ds = tf.data.Dataset.from_tensor_slices(
        (rng.uniform(0, 1, (32, 28, 28, 1)).astype("float32"), rng.integers(0, 10, 32))).batch(16)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    utils.set_seed(1)
    teacher = models.small_cnn(width=4, dense_units=16)  # outside the scope: legal for a teacher

    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("simulated interruption")

    def make(kind):
        with strategy.scope():
            utils.set_seed(0)
            model = models.small_cnn(width=4, dense_units=16)
            trainer = Distiller(model, teacher=teacher, temperature=3.0, alpha=0.4)
            trainer.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
        return trainer

    # The Distiller is the hard case (a teacher outside the scope); AdversarialTrainer resumes
    # under MultiWorkerMirroredStrategy in tests/trainers/test_multiworker.py.
    out = {}
    for kind in ("distill",):
        full = make(kind)
        full.fit(ds, epochs=2, verbose=0)
        backup = keras.callbacks.BackupAndRestore(os.path.join(os.environ["BACKUP"], kind))
        first = make(kind)
        try:
            first.fit(ds, epochs=2, verbose=0, callbacks=[backup, Crash()])
        except RuntimeError:
            pass
        resumed = make(kind)
        resumed.fit(ds, epochs=2, verbose=0, callbacks=[backup])
        out[kind] = {"built": resumed.built,
                     "diff": max(float(np.max(np.abs(a - b))) for a, b in
                                 zip(full.model.get_weights(), resumed.model.get_weights()))}
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_backup_and_restore_is_silent_and_resumes_under_mirrored_strategy(tmp_path):
    """The built trainer under MirroredStrategy (2 logical CPUs, a fresh process for them).

    Marking the trainer built makes BackupAndRestore build the optimizer (momentum slots) before
    restoring; the resumed run must equal the uninterrupted one (same process, same strategy,
    op determinism: the difference is 0 up to reduction order, bound 1e-6), for a Distiller whose
    teacher was built outside the strategy scope too.
    """
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "PYTHONPATH": str(ROOT), "BACKUP": str(tmp_path)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    res = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True, timeout=300,
                         env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "must be built" not in res.stderr, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for kind, result in out.items():
        assert result["built"], kind
        assert result["diff"] < 1e-6, (kind, result)
