"""TFLite Micro: does the .tflite run on a microcontroller runtime, in how small an arena, and
does it compute the same thing as LiteRT?

TFLM ships only a subset of TFLite's kernels (no TOPK_V2, SELECT (v1) or
LOCAL_RESPONSE_NORMALIZATION among others) and needs a fixed *tensor arena* sized by the user.
Everything here runs the real ``tflite-micro`` runtime (in a child process, because its Python
binding can crash on a far-too-small arena) rather than trusting a static op list.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tfrobust.tflite_tools import _flatbuffer
from tfrobust.tflite_tools._names import layer_from_name
from tfrobust.tflite_tools._runtime import TFLiteModel

_WORKER = Path(__file__).with_name("_micro_worker.py")
_MISSING_RE = re.compile(r"Didn't find op for builtin opcode '([^']+)'")
_CUSTOM_RE = re.compile(r"Failed to get registration from op code CUSTOM")
_TOTAL_RE = re.compile(r"Arena allocation total (\d+) bytes")
_KERNEL_RE = re.compile(r"micro/kernels/(\w+)\.cc:\d+ ([^\n]+)")
ARENA_ALIGNMENT = 16


@dataclasses.dataclass
class _WorkerResult:
    ok: bool
    stage: str
    error: str
    stderr: str
    returncode: int
    outputs: np.ndarray | None = None


def _check_bytes(model_bytes, argument="model_bytes") -> bytes:
    if isinstance(model_bytes, (str, os.PathLike)):
        model_bytes = Path(model_bytes).read_bytes()
    if not isinstance(model_bytes, (bytes, bytearray)) or len(model_bytes) < 8 or bytes(
            model_bytes[4:8]) != b"TFL3":
        raise TypeError(f"`{argument}` must be the bytes (or path) of a .tflite flatbuffer. Received: "
                        f"{argument} of type {type(model_bytes).__name__}")
    return bytes(model_bytes)


def _run_worker(model_bytes: bytes, *, arena_size: int, inputs: np.ndarray | None = None,
                invoke: bool = False, allocations: bool = False, timeout: float = 900) -> _WorkerResult:
    with tempfile.TemporaryDirectory(prefix="tfrobust_tflm_") as tmp:
        model_path = Path(tmp) / "model.tflite"
        model_path.write_bytes(model_bytes)
        cmd = [sys.executable, str(_WORKER), f"--model={model_path}", f"--arena={int(arena_size)}"]
        out_path = Path(tmp) / "outputs.npy"
        if inputs is not None:
            in_path = Path(tmp) / "inputs.npy"
            np.save(in_path, inputs)
            cmd += [f"--inputs={in_path}", f"--outputs={out_path}"]
        if invoke:
            cmd.append("--invoke")
        if allocations:
            cmd.append("--allocations")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        status = {}
        for line in reversed(proc.stdout.strip().splitlines()):
            if line.startswith("{"):
                status = json.loads(line)
                break
        if proc.returncode != 0 or not status:
            return _WorkerResult(False, "crash", f"TFLM worker exited with code {proc.returncode}",
                                 proc.stderr, proc.returncode)
        outputs = np.load(out_path) if status["ok"] and inputs is not None else None
        return _WorkerResult(bool(status["ok"]), status["stage"], status.get("error", ""), proc.stderr,
                             proc.returncode, outputs)


@dataclasses.dataclass(frozen=True)
class MissingOp:
    """An operator the TFLM runtime has no kernel for, and where it came from."""

    op: str
    layers: tuple[str, ...]  # Keras layers whose ops produced it ("?" if no name survived)
    tensors: tuple[str, ...]  # output tensor names of those operators

    def describe(self) -> str:
        return f"{self.op} (from layer {', '.join(repr(x) for x in self.layers)})"


def _kernel_rejection(model_bytes: bytes, stderr: str) -> str:
    """Name the op and layers behind a TFLM kernel's failed check (e.g. a float-only kernel).

    TFLM has a kernel for the op but it refused the operator in ``Prepare`` (its log names the
    kernel's source file and the failed check). Returns "" when the log names no kernel.
    """
    m = _KERNEL_RE.search(stderr)
    if not m:
        return ""
    stem, check = m.group(1), m.group(2).strip()
    ops, tensors = _flatbuffer.inspect_model(model_bytes)
    kinds = sorted({op.name for op in ops if op.name.lower().replace("_", "") == stem.replace("_", "")})
    layers, _ = _sources(ops, tensors, kinds)
    where = (f"{'/'.join(kinds)} (from layer {', '.join(repr(x) for x in layers) or '?'})" if kinds
             else f"an op of its kernels/{stem}.cc")
    return (f"TFLite Micro's kernel rejected {where}: {check}. TFLM's kernels support fewer types "
            "than LiteRT's (several are float only); change or drop that layer for microcontrollers")


def _probe_arena(model_bytes: bytes) -> int:
    return max(16 * len(model_bytes), 1 << 20)


def _patch_opcode(model_bytes: bytes, op_name: str) -> bytes:
    """Swap every opcode named ``op_name`` for ADD, so TFLM's next lookup reveals the next gap."""
    from ai_edge_litert import schema_py_generated as schema

    m = _flatbuffer.read_model(model_bytes)
    changed = False
    for opcode in m.operatorCodes:
        if _flatbuffer.opcode_name(opcode)[0] == op_name:
            opcode.builtinCode = opcode.deprecatedBuiltinCode = schema.BuiltinOperator.ADD
            opcode.customCode = None
            opcode.version = 1
            changed = True
    if not changed:
        raise RuntimeError(f"TFLM reported op {op_name!r}, which is not in the model's opcode table")
    return _flatbuffer.write_model(m)


def tflm_missing_ops(model_bytes, *, model=None) -> list[MissingOp]:
    """Every operator of ``model_bytes`` that the installed TFLite Micro runtime cannot resolve.

    TFLM stops at the first operator without a kernel and prints its name; the model is then
    patched (that opcode replaced by ADD) and loaded again until every lookup succeeds, so the
    list is complete and comes from the runtime itself, not from a hand-kept table.

    Args:
      model_bytes: the .tflite flatbuffer (bytes or path).
      model: optional Keras model, used to keep only real layer names in ``layers``.

    Returns:
      One :class:`MissingOp` per missing op type, with the layer(s) whose operators produced it.
    """
    model_bytes = _check_bytes(model_bytes)
    ops, tensors = _flatbuffer.inspect_model(model_bytes)
    missing: list[str] = []
    probe = model_bytes
    for _ in range(len({op.name for op in ops}) + 1):
        res = _run_worker(probe, arena_size=_probe_arena(model_bytes))
        new = [m.group(1) for m in _MISSING_RE.finditer(res.stderr) if m.group(1) not in missing]
        if not new and _CUSTOM_RE.search(res.stderr):
            # TFLM does not print a custom op's name: operators resolve in execution order, so it
            # is the first custom op not yet patched.
            new = [op.name for op in ops if op.custom and op.name not in missing][:1]
        if not new:
            break
        missing.append(new[0])
        probe = _patch_opcode(probe, new[0])
    result = []
    for name in missing:
        layers, names = _sources(ops, tensors, {name}, model)
        result.append(MissingOp(name, tuple(layers) or ("?",), tuple(names)))
    return result


def _sources(ops, tensors, kinds, model=None) -> tuple[list[str], list[str]]:
    """The Keras layers (in order, once each) and output tensor names of the ops named ``kinds``."""
    layers, names = [], []
    for op in ops:
        if op.name not in kinds:
            continue
        for t in op.outputs:
            names.append(tensors[t].name)
            layer = layer_from_name(tensors[t].name, model)
            if layer and layer not in layers:
                layers.append(layer)
    return layers, names


def _arena_total(stderr: str) -> int | None:
    m = _TOTAL_RE.search(stderr)
    return int(m.group(1)) if m else None


def _round_up(n: int) -> int:
    return -(-n // ARENA_ALIGNMENT) * ARENA_ALIGNMENT


@dataclasses.dataclass(frozen=True)
class ArenaSearch:
    """Result of :func:`find_arena_size`."""

    arena_size: int  # smallest arena (multiple of 16 bytes) that allocates and invokes
    recorded_total: int | None  # what TFLM's RecordingMicroAllocator reported
    probes: int
    allocations: str  # print_allocations() text at the found size


def find_arena_size(model_bytes, *, upper: int | None = None) -> ArenaSearch:
    """Smallest tensor arena (bytes, multiple of 16) in which TFLM allocates and runs the model.

    Bisection over the arena size: a size "works" when the interpreter is constructed (tensors
    allocated) and one ``invoke`` on a zero input succeeds. The recording allocator's total from a
    generous first run seeds the bracket.

    The size is measured with this machine's TFLM build (64-bit pointers); 32-bit targets need
    the same or slightly less. Keep a margin if your port adds persistent buffers.

    Args:
      model_bytes: the .tflite flatbuffer (bytes or path).
      upper: arena that must work (default: 16x the model size, at least 1 MiB).

    Raises:
      ValueError: the model does not run in TFLM at all (missing ops are named with their layers).
    """
    model_bytes = _check_bytes(model_bytes)
    upper = int(upper) if upper is not None else _probe_arena(model_bytes)
    first = _run_worker(model_bytes, arena_size=upper, invoke=True, allocations=True)
    probes = 1
    if not first.ok:
        missing = tflm_missing_ops(model_bytes)
        if missing:
            raise ValueError("The model cannot run in TFLite Micro: no kernel for "
                             + "; ".join(m.describe() for m in missing)
                             + ". Received: model_bytes with those ops")
        hint = _kernel_rejection(model_bytes, first.stderr)
        if hint:
            raise ValueError(f"{hint}. Received: model_bytes with that op")
        raise ValueError(f"TFLite Micro failed ({first.stage}: {first.error}) even with a "
                         f"{upper}-byte arena. TFLM said: {first.stderr.strip()[-500:]}. "
                         f"Received: upper={upper}")
    total = _arena_total(first.stderr)

    def works(size: int) -> _WorkerResult | None:
        nonlocal probes
        probes += 1
        res = _run_worker(model_bytes, arena_size=size, invoke=True, allocations=True)
        return res if res.ok else None

    # The recorded total is usually the exact minimum: then two probes settle it.
    hi = _round_up(total) if total else _round_up(upper)
    best = works(hi) if hi != upper else first
    if best is None:
        hi, best = upper, first
    lo = hi - ARENA_ALIGNMENT
    if lo > 0 and (res := works(lo)) is not None:
        hi, best = lo, res
        lo = lo // 2 // ARENA_ALIGNMENT * ARENA_ALIGNMENT  # the record overestimated: bisect
        while lo > 0 and (res := works(lo)) is not None:
            hi, best, lo = lo, res, lo // 2 // ARENA_ALIGNMENT * ARENA_ALIGNMENT
        while hi - lo > ARENA_ALIGNMENT:
            mid = _round_up((lo + hi) // 2)
            if mid >= hi:
                break
            if (res := works(mid)) is not None:
                hi, best = mid, res
            else:
                lo = mid
    return ArenaSearch(arena_size=hi, recorded_total=total, probes=probes,
                       allocations="\n".join(ln for ln in best.stderr.splitlines()
                                             if "RecordingMicroAllocator" in ln))


def run_tflm(model_bytes, x_raw, *, arena_size: int | None = None) -> np.ndarray:
    """Run TFLM on already-quantized (or float, for float models) inputs, one example at a time.

    Args:
      model_bytes: the .tflite flatbuffer (bytes or path); its input must have batch size 1.
      x_raw: array ``[N, ...]`` in the model's input dtype (use ``TFLiteModel.quantize_input``).
      arena_size: tensor arena in bytes (default: a generous 16x the model size).

    Returns:
      Raw outputs ``[N, *output_shape]`` (output_shape includes TFLM's batch of 1) in the model's
      output dtype.
    """
    model_bytes = _check_bytes(model_bytes)
    x_raw = np.asarray(x_raw)
    if x_raw.ndim < 1 or len(x_raw) == 0:
        raise ValueError(f"`x_raw` must be a non-empty batch. Received: x_raw.shape={x_raw.shape}")
    res = _run_worker(model_bytes, arena_size=arena_size or _probe_arena(model_bytes), inputs=x_raw)
    if not res.ok:
        missing = tflm_missing_ops(model_bytes)
        detail = ("no kernel for " + "; ".join(m.describe() for m in missing)) if missing else (
            _kernel_rejection(model_bytes, res.stderr)
            or f"{res.stage}: {res.error}; TFLM said: {res.stderr.strip()[-500:]}")
        raise ValueError(f"TFLite Micro could not run the model ({detail}). "
                         f"Received: arena_size={arena_size}")
    return res.outputs


@dataclasses.dataclass
class TFLMCheck:
    """Result of :func:`tflm_check`: can this .tflite ship to TFLite Micro, and how."""

    supported: bool
    missing_ops: list[MissingOp]
    arena_size: int | None
    recorded_arena: int | None
    parity: dict | None

    def to_dict(self) -> dict:
        return {
            "supported": self.supported,
            "missing_ops": [dataclasses.asdict(m) for m in self.missing_ops],
            "arena_size": self.arena_size,
            "recorded_arena": self.recorded_arena,
            "parity": self.parity,
        }

    def message(self) -> str:
        if self.supported:
            return f"runs in TFLite Micro with a {self.arena_size}-byte arena"
        return "not runnable in TFLite Micro: no kernel for " + "; ".join(
            m.describe() for m in self.missing_ops)


def tflm_parity(model_bytes, x, *, arena_size: int | None = None) -> dict:
    """Compare TFLM and LiteRT outputs of the same .tflite on float inputs ``x``.

    All runtimes receive the identical quantized input (quantized once, by
    :class:`~tfrobust.tflite_tools.TFLiteModel`), so any difference comes from the kernels.
    TFLM ports LiteRT's *reference* kernels, so it should match those bit for bit
    (``reference_max_abs_diff == 0``); LiteRT's default optimized int8 kernels may round an
    intermediate by an LSB, which a data-dependent mask (k-WTA, WTA-dropout) can turn into a
    flipped near-tie and a larger output difference (``max_abs_diff``).

    Returns:
      ``{"examples", "output_dtype", "max_abs_diff" (vs LiteRT's default kernels, raw units:
      LSBs for int8 outputs), "max_abs_diff_float" (dequantized), "argmax_agreement",
      "reference_max_abs_diff" (vs LiteRT's reference kernels, raw units)}``.
    """

    lite = TFLiteModel(model_bytes)
    q = lite.quantize_input(np.asarray(x))
    lite_raw = lite.run_raw(q)
    ref_raw = TFLiteModel(lite.model_bytes, reference_kernels=True).run_raw(q)
    micro_raw = run_tflm(lite.model_bytes, q, arena_size=arena_size)
    micro_raw = micro_raw.reshape(lite_raw.shape)

    def max_diff(a, b):
        return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())

    lf, mf = lite.dequantize_output(lite_raw), lite.dequantize_output(micro_raw)
    return {
        "examples": int(len(q)),
        "output_dtype": np.dtype(lite_raw.dtype).name,
        "max_abs_diff": max_diff(lite_raw, micro_raw),
        "max_abs_diff_float": float(np.max(np.abs(lf - mf))),
        "argmax_agreement": float(np.mean(np.argmax(lf, -1) == np.argmax(mf, -1))),
        "reference_max_abs_diff": max_diff(ref_raw, micro_raw),
    }


def tflm_check(model_bytes, *, model=None, x=None, find_arena: bool = True) -> TFLMCheck:
    """Check that a .tflite runs in TFLite Micro: missing ops (with layers), arena, parity.

    Args:
      model_bytes: the .tflite flatbuffer (bytes or path).
      model: optional source Keras model (keeps only real layer names in the report).
      x: optional float inputs; when given, TFLM outputs are compared with LiteRT's
        (:func:`tflm_parity`).
      find_arena: bisect the smallest working arena (:func:`find_arena_size`).

    Returns:
      A :class:`TFLMCheck`; ``supported`` is False when some op has no TFLM kernel.

    Example:
      >>> check = tflm_check(convert(model, "int8", x_cal, batch_size=1))  # doctest: +SKIP
      >>> check.supported, check.arena_size  # doctest: +SKIP
      (True, 35392)
    """
    model_bytes = _check_bytes(model_bytes)
    missing = tflm_missing_ops(model_bytes, model=model)
    if missing:
        return TFLMCheck(False, missing, None, None, None)
    arena = recorded = None
    if find_arena:
        search = find_arena_size(model_bytes)
        arena, recorded = search.arena_size, search.recorded_total
    parity = tflm_parity(model_bytes, x, arena_size=arena) if x is not None else None
    return TFLMCheck(True, [], arena, recorded, parity)
