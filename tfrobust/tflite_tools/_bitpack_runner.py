"""Compile a bit-packed C program once, then call it from Python as a ``model_fn``.

:func:`~tfrobust.tflite_tools._bitpack.run_on_host` compiles a driver for every call: fine for a
check before flashing, far too slow for an attack that queries the program thousands of times
(Square: up to 5000 queries per image). :class:`BitpackRunner` compiles the generated C **once**
into a shared library (``gcc -shared -fPIC``, with a 10-line batch wrapper) and calls it through
``ctypes``: one C call per batch, NumPy buffers passed by pointer, no process, no file, no copy.

Why a shared library and not a subprocess with a batch-file protocol: the generated code is plain
C99 with a single entry point and no ``main``, so it links into a ``.so`` unchanged; a persistent
subprocess would need a framing protocol over pipes and still pay a write/read per query batch
(Square calls the model once per iteration on a batch of a few hundred images, so the per-call
overhead is what matters). The price of ``ctypes`` is that a crash in the C code would take the
Python process with it; inputs are therefore validated (dtype, shape, range) before every call.
The generated function uses static buffers, so every call runs under one process-wide lock.

The runner is a ``model_fn`` like :class:`~tfrobust.tflite_tools.TFLiteModel`: float images in
(``[N, H, W, C]`` in the Keras model's range), float32 logits out, as a ``tf.Tensor`` (through
``tf.numpy_function`` inside a ``tf.function``). On the ``uint8`` path the float images are
quantized to pixels ``q = round(x / input_scale)`` (half away from zero, as TFLite's Quantize),
which is part of the deployed decision function; :attr:`BitpackRunner.input_quantization` tells an
evaluation which inputs the program can actually receive.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrobust.tflite_tools._bitpack import BinaryCProgram, HostRun

__all__ = ["BitpackRunner", "CompileError", "DEFAULT_CFLAGS"]

DEFAULT_CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror")

# The generated ``<name>_predict`` uses static buffers (not reentrant); ctypes releases the GIL
# during a call, so concurrent calls (tf.numpy_function from several threads) are serialized here.
_LOCK = threading.Lock()

_WRAPPER = """/* Batch entry point for tfrobust's host runner (ctypes). */
#include "%(name)s.h"

long %(name)s_tfr_batch(const %(in_t)s *x, long n, int32_t *top, float *logits, %(pre_t)s *pre) {
    long i;
    for (i = 0; i < n; ++i)
        top[i] = (int32_t)%(name)s_predict(x + i * (long)%(upper)s_INPUT_SIZE,
                                           logits + i * (long)%(upper)s_NUM_CLASSES,
                                           pre + i * (long)%(upper)s_NUM_CLASSES);
    return n;
}
"""

_PROTO = re.compile(r"int\s+([A-Za-z_][A-Za-z0-9_]*)_predict\s*\(\s*const\s+(uint8_t|float)\s*\*\s*input\s*,"
                    r"\s*float\s*\*\s*logits\s*,\s*(int32_t|float)\s*\*\s*preact\s*\)")


class CompileError(RuntimeError):
    """The C compiler is missing or rejected the program (the message has the compiler's output)."""


def _define(header, upper, key):
    m = re.search(rf"#define\s+{upper}_{key}\s+([0-9.eE+-]+)f?\b", header)
    return m.group(1) if m else None


def _program_from_files(path) -> BinaryCProgram:
    """Rebuild the :class:`BinaryCProgram` metadata from ``<name>.c`` + ``<name>.h`` on disk."""
    path = Path(path)
    if path.is_dir():
        sources = sorted(p for p in path.glob("*.c") if p.with_suffix(".h").is_file())
        if len(sources) != 1:
            raise ValueError("`program` directory must hold exactly one <name>.c with its <name>.h (from "
                             f"export_binary_c). Received: {str(path)!r} with "
                             f"{[p.name for p in sources] or 'none'}")
        path = sources[0]
    if path.suffix not in (".c", ".h") or not path.is_file():
        raise FileNotFoundError(f"No bit-packed C program at {str(path)!r}: pass the .c file (or its folder) "
                                f"written by export_binary_c. Received: program={str(path)!r}")
    source_path, header_path = path.with_suffix(".c"), path.with_suffix(".h")
    for p in (source_path, header_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p.name} is missing next to {path.name}: export_binary_c writes both. "
                                    f"Received: program={str(path)!r}")
    header, source = header_path.read_text(), source_path.read_text()
    m = _PROTO.search(header)
    if not m or m.group(1) != path.stem:
        raise ValueError(f"{header_path.name} is not the header of a tfrobust bit-packed C program (no "
                         f"'int {path.stem}_predict(const uint8_t|float *input, float *logits, ...)' "
                         f"prototype). Received: program={str(path)!r}")
    name, in_t, pre_t = m.groups()
    upper = name.upper()
    keys = ("INPUT_HEIGHT", "INPUT_WIDTH", "INPUT_CHANNELS", "NUM_CLASSES")
    dims = [_define(header, upper, k) for k in keys]
    if any(d is None for d in dims):
        raise ValueError(f"{header_path.name} lacks the {upper}_INPUT_HEIGHT/WIDTH/CHANNELS/NUM_CLASSES "
                         f"defines of a tfrobust bit-packed C program. Received: program={str(path)!r}")
    h, w, c, k = (int(d) for d in dims)
    scale = _define(header, upper, "INPUT_SCALE")
    input_dtype = "uint8" if in_t == "uint8_t" else "float32"
    if scale is None:
        scale = 1.0 / 255.0 if input_dtype == "uint8" else 1.0
    return BinaryCProgram(name, header, source, (h, w, c), k, input_dtype, pre_t == "int32_t",
                          {"source_file": str(source_path)}, float(scale))


def _round_half_away(v):
    return np.trunc(v + np.copysign(0.5, v))


class BitpackRunner:
    """A bit-packed binary C program compiled once on the host and called as a ``model_fn``.

    Args:
      program: a :class:`~tfrobust.tflite_tools._bitpack.BinaryCProgram` (from ``generate_c`` /
        ``export_binary_c``), or the path of the exported ``<name>.c`` (its ``<name>.h`` next to
        it) or of the folder holding them.
      input_scale: ``x = q . input_scale`` for the program's ``uint8`` pixels ``q``. Default: the
        program's (``generate_c``'s ``input_scale``; for files, the header's
        ``<NAME>_INPUT_SCALE``, else ``1/255``). Ignored on the ``float32`` path.
      cc: the C compiler (must be on ``PATH`` or a path).
      cflags: compiler flags; ``-fPIC -shared`` are added. Warnings are errors by default.
      build_dir: where the library is built and kept (created if missing). Default: a temporary
        folder removed when the runner is garbage-collected.

    Attributes:
      name, input_shape ``(H, W, C)``, num_classes, input_dtype (``"uint8"`` / ``"float32"``),
      input_scale, library (path of the ``.so``), compile_seconds, calls (batches run so far).

    Raises:
      CompileError: no compiler, or the compiler's message when compilation fails.
      FileNotFoundError / ValueError: a path that is not an exported program.

    Example:
      >>> runner = BitpackRunner(generate_c(binary_model, name="fmnist_bnn"))  # doctest: +SKIP
      >>> runner(x_test[:8])                      # float images in [0, 1] -> tf.Tensor logits [8, 10]
      >>> runner.run(pixels_uint8).argmax         # raw pixels -> HostRun (argmax, logits, preact)
    """

    def __init__(self, program, *, input_scale=None, cc: str = "gcc", cflags=DEFAULT_CFLAGS, build_dir=None):
        if isinstance(program, (str, os.PathLike)):
            program = _program_from_files(program)
        if not isinstance(program, BinaryCProgram):
            raise TypeError("`program` must be a BinaryCProgram (generate_c) or the path of an exported .c "
                            f"file or its folder. Received: program of type {type(program).__name__}")
        if isinstance(cflags, str) or not all(isinstance(f, str) for f in cflags):
            raise TypeError(f"`cflags` must be a sequence of strings. Received: cflags={cflags!r}")
        self.program = program
        self.name = program.name
        self.input_shape = tuple(int(d) for d in program.input_shape)
        self.input_size = int(np.prod(self.input_shape))
        self.num_classes = int(program.num_classes)
        self.input_dtype = program.input_dtype
        self._in_np = np.dtype(np.uint8 if self.input_dtype == "uint8" else np.float32)
        self._pre_np = np.dtype(np.int32 if program.integer_preact else np.float32)
        if self.input_dtype == "uint8":
            scale = program.input_scale if input_scale is None else input_scale
            if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating)) or not (
                    np.isfinite(scale) and scale > 0):
                raise ValueError("`input_scale` must be a positive number. Received: "
                                 f"input_scale={input_scale!r}")
            self.input_scale = float(scale)
        else:
            self.input_scale = 1.0
        self.cc, self.cflags = cc, tuple(cflags)
        self.calls = 0
        self._tmp = None
        if build_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="tfr_bitpack_")
            weakref.finalize(self, shutil.rmtree, self._tmp, True)
            build_dir = self._tmp
        self.build_dir = Path(build_dir)
        t0 = time.perf_counter()
        self.library = self._compile()
        self._lib = ctypes.CDLL(str(self.library))
        fn = getattr(self._lib, f"{self.name}_tfr_batch")
        fn.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        fn.restype = ctypes.c_long
        self._fn = fn
        self.compile_seconds = time.perf_counter() - t0

    # -- building ---------------------------------------------------------------------------------
    def _compile(self) -> Path:
        compiler = shutil.which(self.cc)
        if compiler is None:
            raise CompileError(f"C compiler {self.cc!r} not found: the bit-packed program is compiled on the "
                               "host. Fix: install one (Debian/Ubuntu: apt-get install gcc) or pass cc= the "
                               f"path of one. Received: cc={self.cc!r}")
        p = self.program
        wrapper = _WRAPPER % {"name": p.name, "upper": p.name.upper(),
                              "in_t": "uint8_t" if self.input_dtype == "uint8" else "float",
                              "pre_t": "int32_t" if p.integer_preact else "float"}
        self.build_dir.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256("\0".join([p.header, p.source, wrapper, compiler, *self.cflags]).encode())
        so = self.build_dir / f"lib{p.name}_{digest.hexdigest()[:12]}.so"
        (self.build_dir / f"{p.name}.h").write_text(p.header)
        (self.build_dir / f"{p.name}.c").write_text(p.source)
        (self.build_dir / "tfr_host_runner.c").write_text(wrapper)
        partial = so.with_name(f".{so.name}.{os.getpid()}.tmp")
        cmd = [compiler, *self.cflags, "-fPIC", "-shared", "-I", str(self.build_dir), "-o", str(partial),
               str(self.build_dir / "tfr_host_runner.c"), str(self.build_dir / f"{p.name}.c")]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            partial.unlink(missing_ok=True)
            raise CompileError(f"C compilation of the bit-packed program '{p.name}' failed (exit code "
                               f"{res.returncode}):\n$ {' '.join(cmd)}\n{res.stderr.strip()}")
        os.replace(partial, so)  # a new inode: a library already loaded from this path stays intact
        return so

    # -- inputs -----------------------------------------------------------------------------------
    def _check_shape(self, x, argument):
        per_example = tuple(d for d in x.shape[1:] if d != 1)
        expected = tuple(d for d in self.input_shape if d != 1)
        if x.ndim < 2 or (per_example != expected and tuple(x.shape[1:]) != (self.input_size,)):
            raise ValueError(f"`{argument}` must have shape [N, {', '.join(map(str, self.input_shape))}] (or "
                             f"[N, {self.input_size}]). Received: {argument}.shape={x.shape}")

    @property
    def input_quantization(self):
        """``(scale, zero_point, qmin, qmax)`` of the inputs the program receives, or ``None``.

        On the ``uint8`` path the program sees ``q = round(x / scale)`` in ``[0, 255]``: only the
        grid ``x = q . scale`` reaches it. An evaluation uses this to confirm every adversarial
        example on a pixel image that lies in the eps-ball itself (``x`` rounded to the nearest
        pixel may otherwise sit half a step outside it).
        """
        return (self.input_scale, 0, 0, 255) if self.input_dtype == "uint8" else None

    def quantize_input(self, x) -> np.ndarray:
        """Float images in ``[0, 255 . input_scale]`` -> what the program takes (``uint8`` or float32)."""
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError("`x` must be float images in the Keras model's range (x = q * input_scale, "
                            f"[0, {255 * self.input_scale:g}] here); pass raw uint8 pixels to .run(). "
                            f"Received: x.dtype={x.dtype}")
        self._check_shape(x, "x")
        if not np.all(np.isfinite(x)):
            raise ValueError("`x` must be finite. Received: x with NaN or inf values")
        if self.input_dtype == "float32":
            return x.astype(np.float32)
        q = x.astype(np.float64) / self.input_scale
        if q.size and (q.min() < -0.5 or q.max() > 255.5):
            raise ValueError(f"`x` must lie in [0, {255 * self.input_scale:g}] (uint8 pixels "
                             f"q = x / input_scale in [0, 255], input_scale={self.input_scale:g}). "
                             f"Received: x in [{float(x.min()):g}, {float(x.max()):g}]")
        return np.clip(_round_half_away(q), 0, 255).astype(np.uint8)

    # -- running ----------------------------------------------------------------------------------
    def run(self, inputs) -> HostRun:
        """Run on raw program inputs (``uint8`` pixels, or float32 on the float path): a :class:`HostRun`."""
        q = np.asarray(inputs)
        if q.dtype != self._in_np:
            raise TypeError(f"`inputs` must be {self._in_np.name} for this program (raw pixels, not "
                            "divided by 255; use the runner itself for float images). Received: "
                            f"inputs.dtype={q.dtype}")
        self._check_shape(q, "inputs")
        n, k = len(q), self.num_classes
        q = np.ascontiguousarray(q.reshape(n, self.input_size))
        top = np.zeros(n, np.int32)
        logits = np.zeros((n, k), np.float32)
        pre = np.zeros((n, k), self._pre_np)
        if n:
            with _LOCK:
                self._fn(q.ctypes.data, n, top.ctypes.data, logits.ctypes.data, pre.ctypes.data)
                self.calls += 1
        return HostRun(top, logits, pre)

    def predict(self, x) -> np.ndarray:
        """Float images -> float32 logits ``[N, K]`` (NumPy)."""
        return self.run(self.quantize_input(x)).logits

    def __call__(self, x) -> tf.Tensor:
        """Float images -> float32 logits as a ``tf.Tensor`` (works inside ``tf.function``)."""
        if isinstance(x, tf.Tensor) and not tf.executing_eagerly():
            out = tf.numpy_function(lambda a: self.predict(a), [x], tf.float32, stateful=False)
            out.set_shape([x.shape[0], self.num_classes])
            return out
        return tf.convert_to_tensor(self.predict(np.asarray(x)))

    def __repr__(self) -> str:
        return (f"BitpackRunner(name={self.name!r}, input={self.input_dtype}{list(self.input_shape)}, "
                f"num_classes={self.num_classes}, library={self.library.name!r})")
