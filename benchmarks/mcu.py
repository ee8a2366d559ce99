"""The MCU target of the main job, measured: docs/mcu.md, docs/mcu.json, docs/mcu_frontier.png.

Runs the default ``tfrobust pipeline --target=mcu`` (timed: wall clock, CPU time of the pipeline
process, the machine's load average sampled every 5 s during the run) and, unless
``--no-binary``, the binary-weight configuration (``--target=mcu --binary``: BWN hidden layers
baked to +-1 int8 and stored as 1-bit LUT indices) as an extra frontier point. Every figure comes
from the runs' report.json files; nothing is typed in by hand.

Usage: ``nice -n 5 .venv/bin/python benchmarks/mcu.py [--out runs/mcu] [--reuse]``
(``--reuse`` re-renders the docs from finished runs without running them again).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._harness import machine_idle_seconds  # noqa: E402
from tfrobust.utils import atomic_write_json, atomic_write_text, environment  # noqa: E402

TARGETS = {"weight_bytes": 65536, "arena_bytes": 32768, "clean": 0.85, "robust": 0.70,
           "pipeline_seconds": 900}
# LUT indices cut the flash bytes, but TFLite Micro decodes each kernel into the arena at run time
# (measured: width 1.5 binary + 1-bit LUT = 19,024 B of weights, 89,264 B of arena), so the binary
# point is measured with the arena budget lifted and its arena reported. Width 1.5 binary costs
# 2.25x the default's FLOPs per step: 5 epochs and the 500 images of the frontier keep it near the
# default run's time.
BINARY_ARGS = ["--binary", "--width=1.5", "--frontier=", "--max_arena_bytes=131072", "--epochs=5",
               "--eval_subset=500"]


def _tfrobust():
    exe = Path(sys.executable).with_name("tfrobust")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tfrobust"]


def run_pipeline(out: Path, args: list[str]) -> dict:
    """Run one pipeline to completion and measure it (wall, CPU of the child, load during it)."""
    cmd = [*_tfrobust(), "pipeline", "--target=mcu", f"--out={out}", *args]
    if out.exists():
        shutil.rmtree(out)
    loads, stop = [], threading.Event()

    def sample():
        while not stop.wait(5.0):
            loads.append(os.getloadavg()[0])

    thread = threading.Thread(target=sample, daemon=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    idle0, t0 = machine_idle_seconds(), time.perf_counter()
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.UTC)
    thread.start()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    wall = time.perf_counter() - t0
    stop.set()
    thread.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    idle1 = machine_idle_seconds()
    (out.parent / f"{out.name}.log").write_text(proc.stdout)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"command": " ".join(["tfrobust", "pipeline", "--target=mcu", *args]), "out": str(out),
            "started_utc": started.isoformat(timespec="seconds"), "wall_seconds": round(wall, 1),
            "cpu_seconds": round(cpu, 1), "load_before": [round(v, 2) for v in load_before],
            "load_during": {"mean": round(sum(loads) / len(loads), 2) if loads else None,
                            "min": min(loads, default=None), "max": max(loads, default=None)},
            "machine_idle_cpu_seconds": None if idle0 is None or idle1 is None else round(idle1 - idle0, 1),
            "cores": os.cpu_count()}


def _summary(run: dict) -> dict:
    report = json.loads((Path(run["out"]) / "report.json").read_text())
    res, s = report["results"], report["settings"]
    dep, budget = res["deploy_eval"], res["convert"]["budget"]
    stages = json.loads((Path(run["out"]) / "pipeline_state.json").read_text())["done"]
    return {"weight_bytes": budget["weight_bytes"], "arena_bytes": budget["arena_bytes"],
            "file_bytes": budget["file_bytes"], "clean": dep["clean"], "robust": dep["robust"],
            "test_accuracy": dep["test_accuracy"], "robust_method": dep["robust_method"],
            "per_component": {k: v["robust_accuracy"] for k, v in dep["report"]["per_attack"].items()},
            "apgd_steps": s["apgd_steps"], "square_queries": s["square_queries"], "eps": dep["eps"],
            "n": dep["n"], "width": res["choose"]["width"], "params": res["train"]["params"],
            "binary": s["binary"], "epochs": s["epochs"], "adv": s["adv"],
            "train_history": res["train"]["history"], "stage_seconds": stages,
            "lut_parity": res["convert"].get("lut_parity"),
            "frontier": res["frontier"]["points"], "pipeline_seconds": run["wall_seconds"],
            "pipeline_cpu_seconds": run["cpu_seconds"], "run": run}


def _pct(v):
    return f"{100 * v:.1f}%"


def _earlier(run: dict | None) -> str:
    """The same command measured earlier under heavier load (kept in docs/mcu.json as main_loaded)."""
    if not run:
        return ""
    return (f" The same command run earlier ({run['started_utc']}, load average "
            f"{run['load_during']['mean']:.1f} during it, {run['machine_idle_cpu_seconds']} idle "
            f"CPU-seconds) took {run['wall_seconds'] / 60:.1f} min wall and "
            f"{run['cpu_seconds'] / 60:.1f} CPU-min: "
            "contention inflates the CPU time too, so neither figure from a loaded machine is the cost.")


def _limits(main: dict, binary: dict | None, points: list[dict], met: dict) -> str:
    """Data-driven sentences on what bounds the figures (every number from the runs)."""
    last = main["train_history"][-1]
    best = max(h["guard_pgd10"] for h in main["train_history"])
    train_s = main["stage_seconds"].get("train", 0.0)
    eval_s = main["stage_seconds"].get("deploy_eval", 0.0)
    out = [
        f"- **Bytes are not the limit at the chosen width; capacity and training time are.** The shipped "
        f"file uses {main['weight_bytes'] / TARGETS['weight_bytes']:.0%} of the weight budget and "
        f"{main['arena_bytes'] / TARGETS['arena_bytes']:.0%} of the arena budget; the next width (1.25) "
        "has more parameters than the weight budget has bytes, so wider models need fewer bits per "
        "weight (LUT, binary) rather than more pruning.",
        f"- Held-out PGD-10 accuracy during training: best {best:.3f}, last epoch {last['guard_pgd10']:.3f}; "
        f"the deployed worst case is {_pct(main['robust'])}: the stronger evaluation (APGD through the "
        "interpreter, Square) takes a few points off PGD-10, as expected of an honest evaluation.",
        f"- Time: training took {train_s / 60:.1f} min and the deployed evaluation {eval_s / 60:.1f} min "
        "of this run's wall clock; more epochs or multi-step training (PGD-k makes k + 1 forward-backward "
        "passes per step, FGSM-RS 2) do not fit the 15-minute budget on 2 cores. For scale: an "
        "adversarially trained 166k-parameter CNN (~163 KB int8) "
        "reaches 88.5% clean and at most 78.5% robust at eps 0.1 (Croce et al. 2019), and this repo's "
        "3.3M-parameter madry_cnn after 30 epochs of PGD-7 75.5% (docs/training.md).",
    ]
    front_s = main["stage_seconds"].get("frontier", 0.0)
    if front_s:
        out.append(f"- The frontier stage took {front_s / 60:.1f} min of the "
                   f"{main['pipeline_seconds'] / 60:.1f}; `--frontier=` (shipped point only) drops it when "
                   "only the shipped file matters.")
    pruned = sorted((p for p in points if p["name"].startswith("prune")), key=lambda p: -p["weight_bytes"])
    shipped = next((p for p in points if p["name"].endswith("(shipped)")), None)
    if pruned and shipped:
        steps = "; ".join(f"{p['name'].split()[0]}: {p['weight_bytes'] / shipped['weight_bytes']:.0%} of the "
                          f"bytes, robust {100 * (p['robust'] - shipped['robust']):+.1f} points, clean "
                          f"{100 * (p['clean'] - shipped['clean']):+.1f}" for p in pruned)
        out.append(f"- Pruned from the shipped model (one fine-tuning epoch each), same images: {steps}.")
    if binary is not None:
        out.append(
            f"- Binary weights + 1-bit LUT: {binary['weight_bytes']:,} B of weights for a width-"
            f"{binary['width']:g} model, but TFLite Micro decodes every LUT kernel into the arena at run "
            f"time: {binary['arena_bytes']:,} B of arena, over the 32 KiB budget. LUT trades flash for RAM "
            "on this runtime; it fits a RAM budget only when the largest decoded kernel does.")
    if all(met.values()):
        out.append("- All targets met: `make main` could switch to `--target=mcu`.")
    else:
        missed = ", ".join(k for k, v in met.items() if not v)
        out.append(f"- Missed: {missed}. `make main` keeps its default until the MCU target meets every "
                   "target (issue 15).")
    return "\n".join(out)


def _markdown(main: dict, binary: dict | None, points: list[dict], env: dict,
              earlier: dict | None = None) -> str:
    r = main["run"]
    met = {k: (main[k] <= v if k in ("weight_bytes", "arena_bytes", "pipeline_seconds") else main[k] >= v)
           for k, v in TARGETS.items()}
    mark = {k: "met" if v else "**missed**" for k, v in met.items()}
    comp = ", ".join(f"{k} {_pct(v)}" for k, v in main["per_component"].items())
    rows = "\n".join(f"| {p['name']} | {p['weight_bytes']:,} | {p['arena_bytes']:,} | {_pct(p['clean'])} | "
                     f"{_pct(p['robust'])} | {p['n']} |" for p in points)
    hist = ", ".join(f"{h['guard_pgd10']:.3f}" for h in main["train_history"])
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in main["stage_seconds"].items())
    load = r["load_during"]["mean"]
    dur = {k: round(v, 1) if isinstance(v, float) else v for k, v in r["load_during"].items()}
    shared = (" **while other jobs shared it** (load above the core count)"
              if (dur["mean"] or 0) > r["cores"] else " (other engineers' jobs may run beside it)")
    table = "\n".join([
        "| figure | target | measured | |", "|---|---|---|---|",
        "| deployed weights (every constant buffer of the shipped .tflite) | <= 65,536 B | "
        f"{main['weight_bytes']:,} B | {mark['weight_bytes']} |",
        f"| TFLite Micro arena, batch 1 | <= 32,768 B | {main['arena_bytes']:,} B | {mark['arena_bytes']} |",
        f"| deployed clean accuracy ({main['n']} test images) | >= 85% | {_pct(main['clean'])} | "
        f"{mark['clean']} |",
        f"| deployed robust accuracy, L-inf eps {main['eps']} ({main['n']} test images) | >= 70% | "
        f"{_pct(main['robust'])} | {mark['robust']} |",
        f"| pipeline wall time (load average {load}) | <= 15 min | {main['pipeline_seconds'] / 60:.1f} min | "
        f"{mark['pipeline_seconds']} |",
        f"| pipeline CPU time (all threads) | | {main['pipeline_cpu_seconds'] / 60:.1f} CPU-min | |",
        f"| deployed clean accuracy, all 10,000 test images | | {_pct(main['test_accuracy'])} | |"])
    limits = _limits(main, binary, points, met)
    binary_text = ""
    if binary is not None:
        b = binary["run"]
        binary_text = (f"\nThe binary point is a separate run, `{b['command']}` (started {b['started_utc']}, "
                       f"{b['wall_seconds']:.0f} s wall, {b['cpu_seconds']:.0f} CPU-s, load average "
                       f"{b['load_during']['mean']} during it).")
        lp = binary.get("lut_parity")
        if lp:
            binary_text += (f" Its 1-bit LUT file stores {lp['compressed_weight_bytes']:,} B of weights "
                            f"against {lp['weight_bytes']:,} B for the same baked +-1 int8 file "
                            f"uncompressed; TFLite Micro outputs identical on {lp['examples']} images: "
                            f"{lp['identical']}.")
        binary_text += "\n"
    return f"""# A robust Fashion-MNIST model inside a microcontroller budget

Generated by `benchmarks/mcu.py` from the runs' `report.json` files; do not edit by hand.

Command: `{r['command']}` (the defaults of `--target=mcu`).
Measured {r['started_utc']} on this {r['cores']}-core machine{shared}: load average
{r['load_before'][0]} when the run started and
{dur['mean']} on average during it (min {dur['min']}, max
{dur['max']}; 1-minute averages sampled every 5 s); the machine had
{r['machine_idle_cpu_seconds']} idle CPU-seconds over the run. Wall time on a loaded machine
overstates the cost, so the pipeline's own CPU time is given beside it.{_earlier(earlier)} TensorFlow
{env.get('versions', {}).get('tensorflow', '?')}, Python {env.get('python', '?')}.

{table}

File size {main['file_bytes']:,} B; model `mcu_cnn` width {main['width']:g}, {main['params']:,} parameters.

Robust accuracy method: {main['robust_method']}; APGD {main['apgd_steps']} steps, Square
{main['square_queries']} queries. Robust accuracy after each component (cascade): {comp}.

Recipe: `{main['adv']}` adversarial training for {main['epochs']} epochs (eps warm-up, cosine learning
rate, batch 128), held-out PGD-10 accuracy per epoch {hist}; the best epoch's weights are kept;
post-training int8 (no QAT, no pruning, no LUT: the model fits as trained). Stage times: {stages}.

## Size / robustness frontier

Each point is a deployed file, attacked as deployed on the first {points[0]['n']} test images (the
shipped file's figures restricted to those images); `pruneF` = that fraction of every hidden
layer's units removed from the trained model by filter L1 norm, then one epoch of the same
adversarial training.
{binary_text}
| configuration | weight bytes | arena bytes | clean | robust | images |
|---|---|---|---|---|---|
{rows}

![frontier](mcu_frontier.png)

## What limits it

{limits}
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/mcu")
    parser.add_argument("--reuse", action="store_true", help="re-render from finished runs")
    parser.add_argument("--no-binary", dest="binary", action="store_false")
    args = parser.parse_args(argv)
    out = ROOT / args.out
    runs_path = out.parent / f"{out.name}_runs.json"
    runs = json.loads(runs_path.read_text()) if args.reuse and runs_path.exists() else {}
    if "main" not in runs:
        runs["main"] = run_pipeline(out, [])
        atomic_write_json(runs_path, runs)
    if args.binary and "binary" not in runs:
        runs["binary"] = run_pipeline(out.with_name(out.name + "_binary"), BINARY_ARGS)
        atomic_write_json(runs_path, runs)
    main_summary = _summary(runs["main"])
    binary = _summary(runs["binary"]) if "binary" in runs else None
    points = list(main_summary["frontier"])
    if binary is not None:
        n = points[0]["n"]
        p = dict(binary["frontier"][0])
        p["name"] = f"mcu_cnn w{binary['width']:g} binary + 1-bit LUT"
        if p["n"] != n:  # restrict to the same images as the other points
            dep = json.loads((Path(runs["binary"]["out"]) / "stages/deploy_eval.json").read_text())
            p.update(clean=sum(dep["clean_mask"][:n]) / n, robust=sum(dep["robust_mask"][:n]) / n, n=n)
        points.append(p)
    points.sort(key=lambda p: p["weight_bytes"])
    from tfrobust.cli._pipeline_mcu import frontier_plot

    frontier_plot(points, ROOT / "docs/mcu_frontier.png", max_weight_bytes=TARGETS["weight_bytes"],
                  eps=main_summary["eps"], title=f"deployed files, first {points[0]['n']} test images")
    env = environment()
    result = {**{k: main_summary[k] for k in ("weight_bytes", "arena_bytes", "clean", "robust",
                                               "robust_method", "pipeline_seconds", "pipeline_cpu_seconds",
                                               "eps", "n", "test_accuracy", "file_bytes", "width",
                                               "params", "per_component", "apgd_steps", "square_queries")},
              "targets": TARGETS, "load_average_during": runs["main"]["load_during"],
              "measured_utc": runs["main"]["started_utc"], "command": runs["main"]["command"],
              "frontier": points, "runs": runs, "environment": env}
    atomic_write_json(ROOT / "docs/mcu.json", result)
    markdown = _markdown(main_summary, binary, points, env, runs.get("main_loaded"))
    atomic_write_text(ROOT / "docs/mcu.md", markdown)
    print(json.dumps({k: result[k] for k in ("weight_bytes", "arena_bytes", "clean", "robust",
                                             "pipeline_seconds", "pipeline_cpu_seconds", "n")}))


if __name__ == "__main__":
    main()
