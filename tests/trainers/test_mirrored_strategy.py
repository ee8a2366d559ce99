import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.mark.slow
def test_trainers_inside_mirrored_strategy_over_two_logical_cpus():
    """One SGD step under a 2-replica MirroredStrategy equals the same step on one device.

    The script configures two logical CPUs, which must happen before TensorFlow initialises its
    devices, hence the fresh process.
    """
    script = Path(__file__).with_name("mirrored_check.py")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_USE_LEGACY_KERAS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    for name, diff in out["max_weight_diff"].items():
        assert diff < 1e-5, (name, diff)  # the per-replica losses are scaled to the global batch
        mirrored, single = out["loss"][name]
        assert mirrored == pytest.approx(single, rel=1e-5), name
    hist = out["trades_history"]
    assert set(hist) >= {"loss", "accuracy", "adv_accuracy", "val_loss", "val_adv_accuracy"}
    assert all(np.isfinite(v).all() for v in hist.values())
