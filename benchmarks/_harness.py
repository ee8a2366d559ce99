"""The shared benchmark harness: alternating rounds, warm-up excluded, stalled rounds reported.

Every speed or memory figure tfrobust publishes comes from :func:`compare`. Variants run in
alternating order inside each round (the order rotates from round to round), so slow drift of the
machine (thermal, other load) hits every variant alike; ratios are taken *within* a round and then
summarised, which is far more stable than a ratio of two medians measured minutes apart.

Every round records the wall time *and* the process CPU time (all threads). A round whose wall time
is more than ``stall_factor`` times the variant's fastest round is a *stalled* round: it is marked,
kept in the raw values, and left out of the medians with its reason (:func:`find_stalls`), instead
of being folded into a median. The CPU time tells extra work (a retrace: CPU grows with the wall
time) from time spent off the CPU; the machine's idle time during the round then tells a stall (a
blocked thread while cores sat idle) from other processes holding the cores.

Example:
    >>> res = compare({"baseline": lambda: sum(range(10**5)),
    ...                "fast": lambda: 4999950000}, baseline="baseline", rounds=3)
    >>> sorted(res["variants"])
    ['baseline', 'fast']
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from tfrobust.utils import atomic_write_json, atomic_write_text, environment

STALL_FACTOR = 1.5
# A slow round whose CPU time stayed within this factor of the fastest round's did no extra work.
_SAME_WORK = 1.2


def machine_idle_seconds() -> float | None:
    """Idle CPU-seconds of the whole machine since boot, all cores (Linux ``/proc/stat``), or None.

    During a round, the change of this clock tells a stall from load: time our process spent off
    the CPU while cores sat idle was a wait (a blocked thread); off-CPU time with no idle core was
    other processes holding the CPU.
    """
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")  # idle + iowait
    except (OSError, ValueError, IndexError):
        return None


def _summary(values):
    if not values:
        return {"median": None, "min": None, "max": None, "values": []}
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "values": list(values)}


def find_stalls(wall: Sequence[float], cpu: Sequence[float], idle: Sequence[float | None] | None = None, *,
                factor: float = STALL_FACTOR) -> dict[int, str]:
    """Rounds of one variant whose wall time is more than ``factor`` x its fastest round.

    A round is judged against the same variant's fastest round, never against a fixed budget: the
    fastest round is the best evidence of what the work costs on this machine, and a stall (a
    thread blocked on a timer, another job holding the cores) only ever *adds* wall time.

    Args:
      wall: wall-clock seconds per round.
      cpu: process CPU seconds per round (all threads), same length as ``wall``.
      idle: optional idle CPU-seconds of the whole machine per round (:func:`machine_idle_seconds`
        differences; None entries allowed): when given, the reason also says whether the extra
        wall time came with idle cores (a stall: something waited) or none (other load).
      factor: a round is stalled when ``wall > factor * min(wall)``; ``> 1``.

    Returns:
      ``{round index: reason}`` for every stalled round (empty when none). The reason states the
      wall and CPU times against the fastest round's and which of the two causes they point to.

    Raises:
      ValueError: lengths differ, a time is negative or not finite, or ``factor <= 1``.
    """
    if len(wall) != len(cpu) or (idle is not None and len(idle) != len(wall)):
        raise ValueError(f"`wall`, `cpu` (and `idle`) must have the same length. Received: "
                         f"len(wall)={len(wall)}, len(cpu)={len(cpu)}, "
                         f"len(idle)={None if idle is None else len(idle)}")
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 1):
        raise ValueError(f"`factor` must be a finite number > 1. Received: factor={factor!r}")
    for name, values in (("wall", wall), ("cpu", cpu)):
        if any(not math.isfinite(v) or v < 0 for v in values):
            raise ValueError(f"`{name}` must hold finite times >= 0. Received: {name}={list(values)!r}")
    if not wall:
        return {}
    best = min(range(len(wall)), key=wall.__getitem__)
    w0, c0 = wall[best], cpu[best]
    out = {}
    for i, (w, c) in enumerate(zip(wall, cpu)):
        if w <= factor * w0:
            continue
        head = (f"wall {w:.2f} s = {w / w0:.2f}x the fastest round ({w0:.2f} s), CPU {c:.2f} s vs "
                f"{c0:.2f} s")
        if c > _SAME_WORK * c0:
            out[i] = head + (f": CPU grew {c / c0 if c0 else math.inf:.2f}x too (more work: a retrace, or "
                                 "thread pools spinning while descheduled)")
            continue
        why = head + ": same work, the extra time was spent off the CPU"
        idle_i = None if idle is None else idle[i]
        if idle_i is None:
            out[i] = why + " (a stall or other load)"
        elif idle_i >= 0.5 * (w - w0):
            out[i] = why + f" while the machine had {idle_i:.1f} idle CPU-seconds: a stall (something waited)"
        else:
            out[i] = why + f" with only {idle_i:.1f} idle CPU-seconds on the machine: other load"
    return out


def compare(variants: dict[str, Callable[[], object]], *, baseline: str, rounds: int = 5,
            warmup: int = 1, clock: Callable[[], float] = time.perf_counter,
            cpu_clock: Callable[[], float] = time.process_time,
            idle_clock: Callable[[], float | None] = machine_idle_seconds,
            stall_factor: float = STALL_FACTOR) -> dict:
    """Time each variant ``rounds`` times in alternating order and compare it to ``baseline``.

    Args:
      variants: name -> zero-argument callable doing one measured unit of work. Its return value
        (e.g. an accuracy) is kept as ``last_value``; return something picklable to JSON or None.
      baseline: the variant the ratios are taken against.
      rounds: measured rounds (>= 1).
      warmup: rounds run first and discarded (tracing, caches).
      clock: the wall-clock timer (injectable for tests).
      cpu_clock: the process CPU timer, all threads (injectable for tests).
      idle_clock: the machine's idle CPU-seconds, or None where unknown (injectable for tests).
      stall_factor: see :func:`find_stalls`.

    Returns:
      A dict: ``variants[name] = {seconds, cpu_seconds, stalled, ratio, ratio_of_fastest,
      last_value}``, where ``seconds`` and ``cpu_seconds`` are ``{median, min, max, values}`` with
      ``values`` holding *every* measured round and ``median``/``max`` over the rounds kept;
      ``machine_idle_seconds`` per round (None where unknown);
      ``stalled`` maps a round index (as a string, JSON-safe) to its reason; ``ratio`` summarises
      the per-round ratios to the baseline over rounds where neither stalled (``values`` in round
      order, None for a left-out round) and ``ratio_of_fastest`` is ``min / baseline min``. Also
      ``order`` (the per-round order), ``rounds``, ``warmup``, ``stall_factor``, ``environment``
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
    cpus = {n: [] for n in names}
    idles = {n: [] for n in names}
    last = {n: None for n in names}
    orders = []
    for r in range(warmup + rounds):
        k = r % len(names)
        order = names[k:] + names[:k]
        round_times, round_cpus, round_idle = {}, {}, {}
        for n in order:
            i0, c0, t0 = idle_clock(), cpu_clock(), clock()
            last[n] = variants[n]()
            round_times[n], round_cpus[n], i1 = clock() - t0, cpu_clock() - c0, idle_clock()
            round_idle[n] = None if i0 is None or i1 is None else i1 - i0
        if r >= warmup:
            orders.append(order)
            for n in names:
                times[n].append(round_times[n])
                cpus[n].append(round_cpus[n])
                idles[n].append(round_idle[n])
    stalls = {n: find_stalls(times[n], cpus[n], idles[n], factor=stall_factor) for n in names}
    out = {}
    for n in names:
        kept = [i for i in range(rounds) if i not in stalls[n]]
        seconds = _summary([times[n][i] for i in kept])
        seconds["values"], seconds["min"] = list(times[n]), min(times[n])
        cpu = _summary([cpus[n][i] for i in kept])
        cpu["values"], cpu["min"] = list(cpus[n]), min(cpus[n])
        ratio = ratio_fast = None
        if n != baseline:
            per_round = [None if i in stalls[n] or i in stalls[baseline] else times[n][i] / times[baseline][i]
                         for i in range(rounds)]
            ratio = _summary([v for v in per_round if v is not None])
            ratio["values"] = per_round
            ratio_fast = min(times[n]) / min(times[baseline])
        out[n] = {"seconds": seconds, "cpu_seconds": cpu, "machine_idle_seconds": idles[n],
                  "stalled": {str(i): why for i, why in stalls[n].items()},
                  "ratio": ratio, "ratio_of_fastest": ratio_fast, "last_value": last[n]}
    env_after = environment()
    env_before["loadavg_after"] = env_after["loadavg_1_5_15"]
    return {
        "baseline": baseline,
        "variants": out,
        "order": orders,
        "rounds": rounds,
        "warmup": warmup,
        "stall_factor": stall_factor,
        "environment": env_before,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def markdown_table(result: dict, *, title: str, value_name: str | None = None,
                   notes: str = "") -> str:
    """Render a :func:`compare` result as a Markdown section.

    Columns: the median wall time over the rounds kept [min-max of those], the median CPU time, the
    per-round ratio to the baseline (median [min-max] over rounds where neither stalled) and the
    ratio of the fastest rounds, then every round as ``wall/CPU`` with stalled rounds marked ``*``;
    each stalled round's reason is listed under the table.
    """
    env = result["environment"]
    v = env["versions"]
    factor = result.get("stall_factor", STALL_FACTOR)
    lines = [f"### {title}", ""]
    head = ("| variant | wall s, median [min-max] | CPU s, median | ratio vs " + result["baseline"]
            + " (median [min-max]) | ratio of fastest rounds | rounds: wall/CPU s (* stalled) |")
    sep = "|---|---|---|---|---|---|"
    if value_name:
        head += f" {value_name} |"
        sep += "---|"
    lines += [head, sep]
    reasons = []
    for name, r in result["variants"].items():
        s, c = r["seconds"], r.get("cpu_seconds")
        stalled = r.get("stalled", {})
        if r["ratio"] is None:
            ratio, fastest = "1 (baseline)", "1"
        else:
            q = r["ratio"]
            ratio = "no round without a stall" if q["median"] is None else (
                f"{q['median']:.3f} [{q['min']:.3f}-{q['max']:.3f}]")
            fastest = _fmt(r.get("ratio_of_fastest"), ".3f")
        cells = []
        for i, w in enumerate(s["values"]):
            cell = f"{w:.2f}" + (f"/{c['values'][i]:.2f}" if c else "")
            cells.append(cell + ("*" if str(i) in stalled else ""))
        # the fastest round is never a stalled one, so min is the kept rounds' min as well
        med = f"{s['median']:.4f} [{s['min']:.4f}-{s['max']:.4f}]"
        row = (f"| {name} | {med} | {_fmt(c and c['median'], '.2f')} | {ratio} | {fastest} | "
               f"{' '.join(cells)} |")
        if value_name:
            val = r["last_value"]
            row += f" {val:.4f} |" if isinstance(val, float) else f" {val} |"
        lines.append(row)
        reasons += [f"- {name}, round {int(i) + 1}: {why}." for i, why in stalled.items()]
    lines += [""]
    if reasons:
        lines += [f"Stalled rounds (wall > {factor:g}x the variant's fastest round), left out of the medians "
                  "and of the per-round ratios:", "", *reasons, ""]
    else:
        lines += [f"No stalled round: every round is within {factor:g}x its variant's fastest.", ""]
    lines += [
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
