"""The attack kernels' helpers shared beyond :mod:`tfrobust.attacks` (an explicitly shared module).

Not the user-facing attack API (that is :mod:`tfrobust.attacks`). Two groups:

* what :mod:`tfrobust.evaluation` runs its own batched passes and sanity checks with, so that both
  packages use one definition of "logits", "a model_fn", "an EOT wrapper" and "a compiled forward
  pass" (``CACHE`` holds those compiled functions, one table per model);
* the pieces inside single attacks that their tests check against the papers: APGD's step-size
  checkpoints, FAB's hyperplane projection, Square's square side and L2 update, the L-BFGS
  objective and its norm smoothing.
"""

from tfrobust.attacks._apgd import checkpoints as apgd_checkpoints
from tfrobust.attacks._common import (
    CACHE,
    NORMS,
    as_logits,
    check_model_fn,
    forward,
    inner_model,
    loss_and_grad,
    run,
    unwrap_eot,
)
from tfrobust.attacks._fab import project_hyperplane as fab_project_hyperplane
from tfrobust.attacks._lbfgs import NORM_SMOOTHING as LBFGS_NORM_SMOOTHING
from tfrobust.attacks._lbfgs import _value_and_grad_fn as lbfgs_value_and_grad_fn
from tfrobust.attacks._square import _eta as square_eta
from tfrobust.attacks._square import _side as square_side

__all__ = ["CACHE", "NORMS", "as_logits", "check_model_fn", "forward", "inner_model", "loss_and_grad", "run",
           "unwrap_eot",
           "LBFGS_NORM_SMOOTHING", "apgd_checkpoints", "fab_project_hyperplane", "lbfgs_value_and_grad_fn",
           "square_eta", "square_side"]
