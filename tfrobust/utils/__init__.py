"""Small shared utilities: atomic file writes, seeding, the environment record, Markdown tables."""

from tfrobust.utils._env import environment
from tfrobust.utils._io import (
    atomic_save_model,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)
from tfrobust.utils._markdown import markdown_table
from tfrobust.utils._seed import set_seed

__all__ = [
    "atomic_save_model",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "environment",
    "markdown_table",
    "set_seed",
]
