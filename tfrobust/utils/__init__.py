"""Small shared utilities: atomic file writes, seeding, the environment record, Markdown tables,
and the Keras flavour bridge (``to_tf_keras`` / ``to_keras3`` / ``load_model``, docs/keras3.md)."""

from tfrobust._keras import load_model, to_keras3, to_tf_keras
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
    "load_model",
    "markdown_table",
    "set_seed",
    "to_keras3",
    "to_tf_keras",
]
