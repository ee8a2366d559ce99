"""The shared benchmark harness: alternating rounds, warm-up excluded, medians and per-round ratios.

Every speed or memory figure tfrobust publishes comes from :func:`compare`. Variants run in
alternating order inside each round (the order rotates from round to round), so slow drift of the
machine (thermal, other load) hits every variant alike; ratios are taken *within* a round and then
summarised, which is far more stable than a ratio of two medians measured minutes apart.

Example:
    >>> res = compare({"baseline": lambda: sum(range(10**5)),
    ...                "fast": lambda: 4999950000}, baseline="baseline", rounds=3)
    >>> sorted(res["variants"])
    ['baseline', 'fast']
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from tfrobust.utils import atomic_write_json, atomic_write_text, environment


def _summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "values": list(values)}


def compare(variants: dict[str, Callable[[], object]], *, baseline: str, rounds: int = 5,
            warmup: int = 1, clock: Callable[[], float] = time.perf_counter) -> dict:
    """Time each variant ``rounds`` times in alternating order and compare it to ``baseline``.

    Args:
      variants: name -> zero-argument callable doing one measured unit of work. Its return value
        (e.g. an accuracy) is kept as ``last_value``; return something picklable to JSON or None.
      baseline: the variant the ratios are taken against.
      rounds: measured rounds (>= 1).
      warmup: rounds run first and discarded (tracing, caches).
      clock: the timer (injectable for tests).

    Returns:
      A dict: ``variants[name] = {seconds: {median, min, max, values}, ratio: {...} or None,
      last_value}``, ``order`` (the per-round order), ``rounds``, ``warmup``, ``environment``
      (versions, cores, load before and after) and ``measured_at`` (UTC ISO time).
    """
    if baseline not in variants:
        raise ValueError(f"`baseline` must name a variant. Received: baseline={baseline!r}")
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"`rounds` must be an int >= 1. Received: rounds={rounds!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"`warmup` must be an int >= 0. Received: warmup={warmup!r}")
    names = list(variants)
    env_before = environment()
    times = {n: [] for n in names}
    last = {n: None for n in names}
    orders = []
    for r in range(warmup + rounds):
        k = r % len(names)
        order = names[k:] + names[:k]
        round_times = {}
        for n in order:
            t0 = clock()
            last[n] = variants[n]()
            round_times[n] = clock() - t0
        if r >= warmup:
            orders.append(order)
            for n in names:
                times[n].append(round_times[n])
    out = {}
    for n in names:
        ratios = None
        if n != baseline:
            ratios = _summary([a / b for a, b in zip(times[n], times[baseline])])
        out[n] = {"seconds": _summary(times[n]), "ratio": ratios, "last_value": last[n]}
    env_after = environment()
    env_before["loadavg_after"] = env_after["loadavg_1_5_15"]
    return {
        "baseline": baseline,
        "variants": out,
        "order": orders,
        "rounds": rounds,
        "warmup": warmup,
        "environment": env_before,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def markdown_table(result: dict, *, title: str, value_name: str | None = None,
                   notes: str = "") -> str:
    """Render a :func:`compare` result as a Markdown section (median [min-max], ratio per round)."""
    env = result["environment"]
    v = env["versions"]
    lines = [f"### {title}", ""]
    head = "| variant | median s [min-max] | ratio vs " + result["baseline"] + " (median [min-max]) |"
    sep = "|---|---|---|"
    if value_name:
        head += f" {value_name} |"
        sep += "---|"
    lines += [head, sep]
    for name, r in result["variants"].items():
        s = r["seconds"]
        ratio = "1 (baseline)" if r["ratio"] is None else (
            f"{r['ratio']['median']:.3f} [{r['ratio']['min']:.3f}-{r['ratio']['max']:.3f}]")
        row = f"| {name} | {s['median']:.4f} [{s['min']:.4f}-{s['max']:.4f}] | {ratio} |"
        if value_name:
            val = r["last_value"]
            row += f" {val:.4f} |" if isinstance(val, float) else f" {val} |"
        lines.append(row)
    lines += [
        "",
        f"Measured {result['measured_at']} with `benchmarks/` ({result['rounds']} rounds after "
        f"{result['warmup']} warm-up, variants alternating): Python {env['python']}, "
        f"TF {v.get('tensorflow')}, tf_keras {v.get('tf-keras')}, {env['cpu_count']} cores, "
        f"load {env['loadavg_1_5_15']} -> {env.get('loadavg_after')}.",
    ]
    if notes:
        lines += ["", notes]
    return "\n".join(lines) + "\n"


def write_results(result: dict, *, json_path, markdown_path=None, markdown: str | None = None):
    """Write the raw result as JSON and, optionally, its Markdown rendering (both atomically)."""
    atomic_write_json(json_path, result)
    if markdown_path is not None and markdown is not None:
        atomic_write_text(markdown_path, markdown)
