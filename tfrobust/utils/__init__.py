"""Small shared utilities: atomic file writes, seeding."""

from tfrobust.utils._env import environment
from tfrobust.utils._io import (
    atomic_save_model,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)
from tfrobust.utils._seed import set_seed

__all__ = [
    "atomic_save_model",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "environment",
    "set_seed",
]
