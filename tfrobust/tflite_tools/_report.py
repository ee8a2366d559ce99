"""Deployment reports: size (raw, gzipped), per-tensor dtype and sparsity, per-layer kernel
sparsity and distinct values, ops, arena, latency -- all read from the .tflite itself."""

from __future__ import annotations

import collections
import gzip
import statistics
import time

import numpy as np

from tfrobust.tflite_tools import _flatbuffer
from tfrobust.tflite_tools._micro import _check_bytes, tflm_check
from tfrobust.tflite_tools._runtime import TFLiteModel
from tfrobust.utils import markdown_table


def measure_latency(model_bytes, *, threads=(1, 2), repeats: int = 200, warmup: int = 20,
                    seed: int = 0) -> dict:
    """Batch-1 LiteRT latency per thread count: median, min and max of ``repeats`` invokes (ms).

    One unit is what an application does per image: quantize, ``set_tensor``, ``invoke``,
    ``get_tensor``, dequantize.
    """

    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"`repeats` must be a positive int. Received: repeats={repeats!r}")
    out = {}
    for t in threads:
        lite = TFLiteModel(model_bytes, num_threads=t)
        x = np.random.default_rng(seed).uniform(0, 1, (1, *lite.input_shape[1:])).astype(np.float32)
        for _ in range(warmup):
            lite.predict(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            lite.predict(x)
            times.append((time.perf_counter() - t0) * 1e3)
        out[str(t)] = {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
                       "repeats": repeats}
    return out


def model_report(model_bytes, *, model=None, latency: bool = True, threads=(1, 2), repeats: int = 200,
                 tflm: bool = True) -> dict:
    """Everything needed to decide whether a .tflite ships: a JSON-ready dict.

    Keys: ``size_bytes``, ``gzip_bytes`` (gzip level 9: how well weights would compress, e.g.
    after pruning), ``weight_bytes`` (constant buffers), ``ops`` (execution order) and
    ``op_counts``, ``tensors`` (name, dtype, shape, bytes, sparsity = fraction of stored values
    equal to the zero point, i.e. representing 0.0), ``kernels`` (per layer, from
    :func:`kernel_stats`: bytes, sparsity, distinct values, LUT index bits -- the deployed
    figures), ``input``/``output`` (dtype, shape, quantization), ``tflm``
    (:class:`~tfrobust.tflite_tools.TFLMCheck` as a dict: missing ops with
    layers, smallest arena) and ``latency_ms`` (:func:`measure_latency`).

    Args:
      model_bytes: .tflite bytes or path.
      model: optional source Keras model (layer names in the TFLM check).
      latency: measure batch-1 latency for each count in ``threads``.
      repeats: timed invokes per thread count.
      tflm: run the TFLite Micro check and arena search.

    A TFLite Micro LUT-compressed model (:func:`compress_lut`) runs only in TFLM: its latency is
    not measured (LiteRT has no ``TFLM_DECODE`` kernel) and ``input``/``output`` come from the file.
    """

    data = _check_bytes(model_bytes)
    ops, tensors = _flatbuffer.inspect_model(data)
    tflm_only = any(op.name == _flatbuffer.DECODE_OP for op in ops)
    io = _io_from_file(data, tensors) if tflm_only else _io_from_litert(TFLiteModel(data))
    report = {
        "size_bytes": len(data),
        "gzip_bytes": len(gzip.compress(data, compresslevel=9, mtime=0)),
        "weight_bytes": int(sum(t.nbytes for t in tensors if t.constant)),
        "ops": [op.name for op in ops],
        "op_counts": dict(collections.Counter(op.name for op in ops)),
        "tensors": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "bytes": t.nbytes,
                     "constant": t.constant, "sparsity": t.sparsity,
                     "per_channel": len(t.scales) > 1} for t in tensors],
        "kernels": [k.to_dict() for k in _flatbuffer.kernel_stats(data)],
        **io,
        "tflm": tflm_check(data, model=model).to_dict() if tflm else None,
        "latency_ms": (measure_latency(data, threads=threads, repeats=repeats)
                       if latency and not tflm_only else None),
    }
    return report


def _io_entry(dtype, shape, scale, zp) -> dict:
    return {"dtype": np.dtype(dtype).name, "shape": [int(d) for d in shape],
            "scale": float(scale) if scale else None, "zero_point": int(zp) if scale else None}


def _io_from_litert(lite) -> dict:
    return {key: _io_entry(det["dtype"], det["shape"], *det["quantization"])
            for key, det in (("input", lite.input_details), ("output", lite.output_details))}


def _io_from_file(data: bytes, tensors) -> dict:
    graph = _flatbuffer.read_model(data).subgraphs[0]
    out = {}
    for key, index in (("input", graph.inputs[0]), ("output", graph.outputs[0])):
        t = tensors[int(index)]
        out[key] = _io_entry(_flatbuffer._NP_TYPES[t.dtype], t.shape, t.scales[0] if t.scales else 0,
                             t.zero_points[0] if t.zero_points else 0)
    return out


def _fmt_bytes(n) -> str:
    return "-" if n is None else f"{n:,}"


def _fmt_sparsity(s) -> str:
    return "-" if s is None else f"{s:.3f}"


def report_markdown(report: dict, *, title: str = "TFLite model") -> str:
    """Render :func:`model_report` as a Markdown section (summary table + constant tensors)."""
    tflm = report.get("tflm")
    if tflm is None:
        tflm_cell = "not checked"
    elif tflm["supported"]:
        tflm_cell = f"yes, arena {_fmt_bytes(tflm['arena_size'])} B"
    else:
        tflm_cell = "no: " + "; ".join(f"{m['op']} ({', '.join(m['layers'])})" for m in tflm["missing_ops"])
    summary = [["size", f"{_fmt_bytes(report['size_bytes'])} B"],
               ["gzipped", f"{_fmt_bytes(report['gzip_bytes'])} B"],
               ["constant (weight) bytes", f"{_fmt_bytes(report['weight_bytes'])} B"],
               ["input", f"{report['input']['dtype']} {report['input']['shape']}"],
               ["output", f"{report['output']['dtype']} {report['output']['shape']}"],
               ["ops", ", ".join(f"{k} x{v}" for k, v in report["op_counts"].items())],
               ["TFLite Micro", tflm_cell]]
    summary += [[f"batch-1 latency, {t} thread(s)", f"{lat['median_ms']:.3f} ms median "
                 f"[{lat['min_ms']:.3f}-{lat['max_ms']:.3f}], {lat['repeats']} runs"]
                for t, lat in (report.get("latency_ms") or {}).items()]
    lines = [f"### {title}", "", markdown_table(["property", "value"], summary)]
    if report.get("kernels"):
        lines += ["", markdown_table(
            ["layer kernel", "op", "shape", "bytes in file", "sparsity", "distinct values (most per channel)",
             "LUT index bits"],
            [[f"`{k['layer']}`", k["op"], k["shape"], _fmt_bytes(k["nbytes"]), _fmt_sparsity(k["sparsity"]),
              f"{k['unique_values']} ({k['max_unique_per_channel']})", k["lut_bits"] or "-"]
             for k in report["kernels"]])]
    lines += ["", markdown_table(
        ["constant tensor", "dtype", "shape", "bytes", "sparsity"],
        [[f"`{t['name']}`", f"{t['dtype']}{' (per-channel)' if t['per_channel'] else ''}", t["shape"],
          _fmt_bytes(t["bytes"]), _fmt_sparsity(t["sparsity"])] for t in report["tensors"] if t["constant"]])]
    return "\n".join(lines) + "\n"
