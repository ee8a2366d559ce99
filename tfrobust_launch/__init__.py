"""The ``tfrobust`` console script: quiet TensorFlow's start-up, then run ``tfrobust.cli.main``.

This tiny package exists only to act *before* TensorFlow is imported, which no module inside
``tfrobust`` can do: importing ``tfrobust.cli.main`` first runs ``tfrobust/__init__.py``, which
imports TensorFlow. TensorFlow 2.21 prints its CUDA probe (``Could not find cuda drivers``,
``failed call to cuInit``; on GPU builds ``Unable to register cuDNN/cuFFT/cuBLAS factory`` and
``TF-TRT Warning``) and oneDNN / CPU-feature notices through absl logging, which writes to
stderr before ``absl::InitializeLog`` whatever ``TF_CPP_MIN_LOG_LEVEL`` says, and twice (the
framework library and the profiler plugin each carry a copy). So the launcher points file
descriptor 2 at a temporary file while TensorFlow is imported and its devices are probed, then
writes back every line that is not one of those known-harmless notices: a real error (an
ImportError, a missing library) still reaches the terminal.

The library itself never does this (no environment or stream mutation at import); only the
``tfrobust`` application does. ``tfrobust <command> --verbose_tf`` or ``TFROBUST_TF_LOGS=1``
turns all of TensorFlow's start-up and Python logs back on.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

# Lines TensorFlow prints on every start that say nothing about the user's run.
STARTUP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|cudart_stub\.cc|Could not find cuda drivers|failed call to cuInit"
    r"|Unable to register cu(DNN|FFT|BLAS) factory|TF-TRT Warning|Could not find TensorRT"
    r"|computation_placer\.cc.*already registered"
    r"|oneDNN custom operations are on"
    r"|cpu_feature_guard\.cc|This TensorFlow binary is optimized to use available CPU instructions"
    r"|To enable the following instructions: .* rebuild TensorFlow"
)

_VERBOSE_FLAGS = ("--verbose_tf", "--verbose_tf=true", "--verbose_tf=True", "--verbose_tf=1")


def tf_logs_requested(argv=()) -> bool:
    """True when the user asked for TensorFlow's own logs: ``TFROBUST_TF_LOGS=1`` or the flag.

    ``argv`` is peeked at for ``--verbose_tf`` only because the decision is needed before the
    flags are parsed; absl parses the flag itself later (``tfrobust.cli.main``).
    """
    if os.environ.get("TFROBUST_TF_LOGS", "").strip() not in ("", "0"):
        return True
    return any(a in _VERBOSE_FLAGS for a in list(argv)[1:])


@contextlib.contextmanager
def filtered_stderr(noise=STARTUP_NOISE):
    """Capture file descriptor 2 (C++ and Python writers alike); replay lines not matching ``noise``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [ln for ln in text.splitlines(keepends=True) if not noise.search(ln)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def main(argv=None):
    """Console-script entry point (``tfrobust = tfrobust_launch:main``)."""
    argv = list(sys.argv if argv is None else argv)
    # The legacy-Keras switch must precede TensorFlow's first import (TF-MOT needs it).
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    if tf_logs_requested(argv):
        from tfrobust.cli import main as cli
    else:
        # Filters TensorFlow's C++ INFO and WARNING lines once its logging is initialised.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with filtered_stderr():
            # Imported here, after the environment and stderr are set: the point of this package.
            import tensorflow as tf

            from tfrobust.cli import main as cli

            tf.config.list_physical_devices()  # the CUDA probe (cuInit) prints here, not mid-run
    return cli.main(argv)
