"""Evaluation's inner pieces, importable apart from the user API (an explicitly shared module).

Not what a user calls (that is :mod:`tfrobust.evaluation`): the deployed-file evaluation's BPDA
wrapper (the deployed model's value, the source model's gradient) and its snapping of candidates
onto the file's input grid, and the channel statistics' normalized entropy, which their tests
check on their own.
"""

from tfrobust.evaluation._channels import normalized_entropy
from tfrobust.evaluation._deployed import ThroughInterpreter
from tfrobust.evaluation._deployed import _snap_to_inputs as snap_to_inputs

__all__ = ["ThroughInterpreter", "normalized_entropy", "snap_to_inputs"]
