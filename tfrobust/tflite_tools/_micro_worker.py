"""Run a .tflite model in TFLite Micro, in a child process.

TFLM's Python binding can crash the interpreter process (SIGSEGV) when the tensor arena is far
too small, so arena searches and parity runs happen here, isolated. This file imports only NumPy
and ``tflite_micro`` (no TensorFlow, no tfrobust), so a child starts in a fraction of a second.

Usage: ``python _micro_worker.py --model=M.tflite --arena=N [--inputs=X.npy --outputs=Y.npy]
[--invoke] [--allocations]``. The last stdout line is a JSON status; C-level messages (missing
kernels, allocation failures, ``print_allocations``) go to stderr.
"""

import argparse
import json
import sys

import numpy as np


def _status(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--arena", type=int, required=True)
    p.add_argument("--inputs")
    p.add_argument("--outputs")
    p.add_argument("--invoke", action="store_true", help="invoke once on a zero input")
    p.add_argument("--allocations", action="store_true")
    a = p.parse_args()

    from tflite_micro import runtime

    with open(a.model, "rb") as f:
        model = f.read()
    try:
        interp = runtime.Interpreter.from_bytes(model, arena_size=a.arena)
    except Exception as e:  # noqa: BLE001 - reported to the parent as a status
        _status(ok=False, stage="init", error=f"{type(e).__name__}: {e}")
        return 0
    details = interp.get_input_details(0)
    try:
        if a.inputs:
            xs = np.load(a.inputs)
            outs = []
            for x in xs:
                interp.set_input(x.reshape(details["shape"]).astype(details["dtype"]), 0)
                interp.invoke()
                outs.append(np.array(interp.get_output(0), copy=True))
            np.save(a.outputs, np.stack(outs))
        elif a.invoke:
            interp.set_input(np.zeros(details["shape"], dtype=details["dtype"]), 0)
            interp.invoke()
    except Exception as e:  # noqa: BLE001
        _status(ok=False, stage="invoke", error=f"{type(e).__name__}: {e}")
        return 0
    if a.allocations:
        sys.stderr.flush()
        interp.print_allocations()
    _status(ok=True, stage="done", input_shape=[int(d) for d in details["shape"]],
            input_dtype=np.dtype(details["dtype"]).name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
