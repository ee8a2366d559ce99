"""Execute every notebook in colab/ at its CI size and save it in place with its outputs and figures.

Usage: .venv/bin/python scripts/run_notebooks.py [colab/NAME.ipynb ...]    (or: make notebooks)

The committed notebooks then show the results of this run to a reader who does not run them;
tests/colab/test_notebooks.py executes them again in memory and never writes them. Each notebook
runs in a scratch directory (like the test), without per-cell timing metadata, and with this
machine's paths in the outputs shortened (the repo and the Python installation), so a re-run only
changes the lines whose numbers changed.
"""

import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
# TensorFlow's chatter that says nothing about the notebook: CUDA probing, oneDNN, CPU instruction
# sets, absl's pre-init notice, and the TFLite converter's known-harmless notices.
_NOISE = re.compile(r"(cuda|cuDNN|cuFFT|cuBLAS|oneDNN|TF_ENABLE_ONEDNN_OPTS|cpu_feature_guard|"
                    r"rebuild TensorFlow|All log messages before absl::InitializeLog|"
                    r"computation_placer|E0000 |W0000 |I0000 |trackable_obj argument|"
                    r"Statistics for quantized inputs were expected|^\s*warnings\.warn\(|"
                    r"^fully_quantize: |XNNPACK delegate for CPU)")


def _paths_to_hide():
    """Absolute paths of this machine, longest first, with what replaces them."""
    prefixes = {sys.prefix: "<venv>", sys.base_prefix: "<python>", str(ROOT): "<repo>", str(Path.home()): "~"}
    return sorted(((p, r) for p, r in prefixes.items() if p and p != "/"), key=lambda pr: -len(pr[0]))


def _clean(text, paths):
    for path, replacement in paths:
        text = text.replace(path, replacement)
    return text


def clean_outputs(nb):
    """Drop TensorFlow's start-up noise from stderr and shorten machine paths in text outputs."""
    paths = _paths_to_hide()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                lines = out["text"].splitlines(keepends=True)
                if out.get("name") == "stderr":
                    lines = [line for line in lines if not _NOISE.search(line)]
                out["text"] = _clean("".join(lines), paths)
                if not out["text"].strip():
                    continue
            elif "data" in out and "text/plain" in out["data"]:
                out["data"]["text/plain"] = _clean(out["data"]["text/plain"], paths)
            elif out.get("output_type") == "error":
                out["traceback"] = [_clean(t, paths) for t in out["traceback"]]
            kept.append(out)
        cell["outputs"] = kept
    return nb


def execute(path: Path):
    """Run the notebook at ``path`` top to bottom in a scratch directory; return it with outputs."""
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as scratch:
        NotebookClient(nb, timeout=900, kernel_name="python3", record_timing=False,
                       resources={"metadata": {"path": scratch}}).execute()
    return clean_outputs(nb)


def main(argv):
    paths = [Path(p) for p in argv] or sorted((ROOT / "colab").glob("*.ipynb"))
    for path in paths:
        start = time.perf_counter()
        nb = execute(path)
        nbformat.write(nb, path)
        kib = path.stat().st_size / 1024
        print(f"{path.name}: {time.perf_counter() - start:.0f} s, {kib:.0f} KiB", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
