"""The attack kernels' helpers that :mod:`tfrobust.evaluation` shares (an explicitly shared module).

Not the user-facing attack API (that is :mod:`tfrobust.attacks`): these are the pieces the
evaluation runs its own batched passes and sanity checks with, so that both packages use one
definition of "logits", "a model_fn", "an EOT wrapper" and "a compiled forward pass".
"""

from tfrobust.attacks._common import (
    NORMS,
    as_logits,
    check_model_fn,
    forward,
    inner_model,
    loss_and_grad,
    run,
    unwrap_eot,
)

__all__ = ["NORMS", "as_logits", "check_model_fn", "forward", "inner_model", "loss_and_grad", "run",
           "unwrap_eot"]
