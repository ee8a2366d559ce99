"""The CLI's internals shared with its tests (an explicitly shared module).

Not the user-facing CLI (that is ``tfrobust <command>`` and each command module's ``Config`` /
``run``): the pieces tests/cli checks directly.

* the flag layer: :func:`define` (absl flags from a ``Config``), :func:`from_flags` and the
  :class:`ConfigError` a refused value becomes (exit code 2);
* the pipeline's stages: :class:`Settings` and :class:`MCUSettings` (every setting of a run and
  its ``--target=mcu`` defaults), :class:`Context` and the train stage :func:`stage_train`;
* the MCU training's catastrophic-overfitting guard: :class:`OverfittingGuard`,
  :func:`train_guarded` and the PGD accuracy it watches (:func:`pgd_accuracy`).
"""

from tfrobust.cli._flags import ConfigError, define, from_flags
from tfrobust.cli._pipeline_mcu import MCUSettings, OverfittingGuard, train_guarded
from tfrobust.cli._pipeline_mcu import _pgd_accuracy as pgd_accuracy
from tfrobust.cli._pipeline_stages import Context, Settings, stage_train

__all__ = ["ConfigError", "define", "from_flags",
           "Context", "MCUSettings", "Settings", "stage_train",
           "OverfittingGuard", "pgd_accuracy", "train_guarded"]
