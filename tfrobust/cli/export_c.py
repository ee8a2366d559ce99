"""``tfrobust export-c``: a .tflite -> ``.h``/``.cc`` pair (aligned array, length, TFLM arena size)."""

from __future__ import annotations

from absl import flags

FLAGS = flags.FLAGS

flags.DEFINE_string("tflite", None, "Input .tflite file.")
flags.DEFINE_string("out", None, "Output path without suffix (writes <out>.h and <out>.cc).")
flags.DEFINE_string("name", "g_model", "C identifier of the array.")
flags.DEFINE_integer("arena_size", None, "Arena size to write; default: bisect the smallest working "
                     "TFLite Micro arena.", lower_bound=1)
flags.mark_flags_as_required(["tflite", "out"])
flags.register_validator("name", lambda v: v.isidentifier() and v.isascii(),
                         message="--name must be a C identifier")


def run() -> int:
    from pathlib import Path

    from tfrobust import tflite_tools

    src = Path(FLAGS.tflite)
    if not src.is_file():
        raise FileNotFoundError(f"--tflite: no file at {str(src)!r}")
    res = tflite_tools.export_c(src.read_bytes(), FLAGS.out, name=FLAGS.name,
                                arena_size=FLAGS.arena_size if FLAGS.arena_size else "auto")
    print(f"wrote {res['header']} and {res['source']}: {res['length']:,} bytes, "
          f"arena {res['arena_size']} bytes")
    return 0
