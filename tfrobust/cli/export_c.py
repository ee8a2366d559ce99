"""``tfrobust export-c``: a .tflite -> ``.h``/``.cc`` pair (aligned array, length, TFLM arena size).

Python: ``run(Config(tflite="m.tflite", out="c/model"))`` returns
:func:`tfrobust.tflite_tools.export_c`'s dict.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tfrobust import tflite_tools
from tfrobust.cli import _common
from tfrobust.cli import _flags as F
from tfrobust.cli._flags import setting


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Settings of ``tfrobust export-c`` (each is also a flag of the same name)."""

    tflite: str = setting(help="Input .tflite file.")
    out: str = setting(help="Output path without suffix (writes <out>.h and <out>.cc).")
    name: str = setting("g_model", "C identifier of the array.")
    arena_size: int | None = setting(None, "Arena size to write; default: bisect the smallest working "
                                     "TFLite Micro arena.")

    def __post_init__(self):
        _common.check_bounds(self, arena_size=(1, None))
        if not (isinstance(self.name, str) and self.name.isidentifier() and self.name.isascii()):
            raise ValueError(f"`name` must be a C identifier. Received: name={self.name!r}")


def run(config: Config) -> dict:
    """Write ``<out>.h`` and ``<out>.cc``; returns paths, length and arena size."""
    src = Path(config.tflite)
    if not src.is_file():
        raise FileNotFoundError(f"--tflite: no file at {str(src)!r}")
    res = tflite_tools.export_c(src.read_bytes(), config.out, name=config.name,
                                arena_size=config.arena_size if config.arena_size else "auto")
    print(f"wrote {res['header']} and {res['source']}: {res['length']:,} bytes, "
          f"arena {res['arena_size']} bytes")
    return res


def main(argv=None) -> int:
    """absl layer: the parsed flags become a :class:`Config`."""
    del argv
    run(F.from_flags(Config))
    return 0
