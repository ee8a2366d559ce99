"""Microcontroller budgets checked on the deployed file: weight bytes and TFLite Micro arena."""

from __future__ import annotations

import dataclasses

from tfrobust import _validate as V
from tfrobust.tflite_tools import _flatbuffer
from tfrobust.tflite_tools._micro import _check_bytes, find_arena_size

#: A Cortex-M class budget (issue 15): 64 KiB of flash for weights, 32 KiB of RAM for the arena.
DEFAULT_MAX_WEIGHT_BYTES = 65536
DEFAULT_MAX_ARENA_BYTES = 32768


class BudgetError(ValueError):
    """A deployed model is over a microcontroller budget; ``budget`` holds the measured figures."""

    def __init__(self, message: str, budget: Budget):
        super().__init__(message)
        self.budget = budget


@dataclasses.dataclass(frozen=True)
class Budget:
    """Figures of :func:`check_budget`, all read from the ``.tflite`` / measured in TFLite Micro."""

    weight_bytes: int  # every constant buffer: kernels, biases, LUT indices and value tables
    arena_bytes: int  # smallest TFLM arena that allocates and invokes (16-byte multiple)
    file_bytes: int
    max_weight_bytes: int | None
    max_arena_bytes: int | None

    @property
    def over(self) -> list[str]:
        """One sentence per exceeded budget, with the excess in bytes."""
        out = []
        for what, value, limit in (("weights", self.weight_bytes, self.max_weight_bytes),
                                   ("TFLite Micro arena", self.arena_bytes, self.max_arena_bytes)):
            if limit is not None and value > limit:
                out.append(f"{what} {value:,} B > {limit:,} B budget (over by {value - limit:,} B, "
                           f"{value / limit:.2f}x)")
        return out

    @property
    def ok(self) -> bool:
        return not self.over

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "ok": self.ok, "over": self.over}


def weight_bytes(model_bytes) -> int:
    """Bytes of every constant buffer of a .tflite (what a microcontroller keeps in flash besides
    the flatbuffer's small graph description)."""
    _, tensors = _flatbuffer.inspect_model(_check_bytes(model_bytes))
    return int(sum(t.nbytes for t in tensors if t.constant))


def check_budget(tflite_bytes, *, max_weight_bytes: int | None = DEFAULT_MAX_WEIGHT_BYTES,
                 max_arena_bytes: int | None = DEFAULT_MAX_ARENA_BYTES, arena_bytes: int | None = None,
                 raise_error: bool = True) -> Budget:
    """Measure a deployed .tflite against a microcontroller budget; raise when it is over.

    The weight figure is read from the file (every constant buffer: kernels, biases, LUT indices
    and tables); the arena is the smallest one in which TFLite Micro allocates and runs the model
    (:func:`find_arena_size`, bisection on this machine's TFLM build). Export batch-1 models: a
    larger batch multiplies the activations.

    Args:
      tflite_bytes: the .tflite flatbuffer (bytes or a path).
      max_weight_bytes: flash budget for the weights (None: not checked).
      max_arena_bytes: RAM budget for the TFLM arena (None: not checked).
      arena_bytes: an arena already measured for this file (skips the bisection).
      raise_error: raise :class:`BudgetError` when over (False: return the figures only).

    Returns:
      A :class:`Budget` with the measured figures.

    Raises:
      BudgetError: (a ``ValueError``) the model is over a budget; the message names each budget,
        the measured figure and the excess, and ``error.budget`` holds the figures.
      ValueError: bad arguments, or a model TFLite Micro cannot run (missing ops named).

    Example:
      >>> data = convert(model, "int8", x_cal, batch_size=1)  # doctest: +SKIP
      >>> check_budget(data, max_weight_bytes=65536, max_arena_bytes=32768)  # doctest: +SKIP
      Budget(weight_bytes=61720, arena_bytes=14928, ...)
    """
    data = _check_bytes(tflite_bytes, "tflite_bytes")
    if max_weight_bytes is not None:
        max_weight_bytes = V.integer("max_weight_bytes", max_weight_bytes, minimum=1)
    if max_arena_bytes is not None:
        max_arena_bytes = V.integer("max_arena_bytes", max_arena_bytes, minimum=1)
    if arena_bytes is None:
        arena_bytes = find_arena_size(data).arena_size
    arena_bytes = V.integer("arena_bytes", arena_bytes, minimum=1)
    V.boolean("raise_error", raise_error)
    budget = Budget(weight_bytes=weight_bytes(data), arena_bytes=arena_bytes, file_bytes=len(data),
                    max_weight_bytes=max_weight_bytes, max_arena_bytes=max_arena_bytes)
    if raise_error and not budget.ok:
        raise BudgetError(
            "The deployed model is over its microcontroller budget: " + "; ".join(budget.over)
            + ". Fix: a narrower model (e.g. mcu_cnn width), structured pruning "
            "(tfrobust.compression.prune_units), LUT compression of clustered weights "
            "(tflite_tools.compress_lut) for the weights; smaller or earlier-pooled activations and "
            "batch size 1 for the arena. Received: "
            f"weight_bytes={budget.weight_bytes}, arena_bytes={budget.arena_bytes}, "
            f"max_weight_bytes={max_weight_bytes}, max_arena_bytes={max_arena_bytes}", budget)
    return budget
