"""A record of the software and machine a result was produced on."""

from __future__ import annotations

import os
import platform
from importlib import metadata

from tfrobust._version import __version__

_PACKAGES = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert",
             "tflite-micro", "numpy", "absl-py")


def environment(extra_packages: tuple[str, ...] = ()) -> dict:
    """Versions of the stack, Python, cores and load average, for reports and benchmarks."""
    versions = {}
    for name in (*_PACKAGES, *extra_packages):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["tfrobust"] = __version__
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg_1_5_15": load,
        "versions": versions,
    }
