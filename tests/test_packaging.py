"""The built wheel is what users install: its contents, its metadata, and that it runs on its own.

Offline: the wheel is built without build isolation from a copy of the source tree (so the repo
gets no build/ or egg-info from a test), and installed without dependencies into a new virtual
environment that reaches the already installed dependencies through a ``.pth`` file; tfrobust
itself must come from the wheel. The real install from PyPI into a fresh Python 3.12 is
documented in docs/install.md (it downloads TensorFlow, so it is not part of the suite).
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__",
                                     ".pytest_cache", ".ruff_cache")


def _run(*args, **kwargs):
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert out.returncode == 0, f"{' '.join(map(str, args[:4]))} ... failed:\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCE)
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", tmp / "dist", src)
    (path,) = (tmp / "dist").glob("tfrobust-*-py3-none-any.whl")
    return path


def _metadata(wheel):
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(zf.read(name).decode())


def _runtime_requirements(meta):
    reqs = [Requirement(r) for r in meta.get_all("Requires-Dist")]
    return [r for r in reqs if r.marker is None]


def _locked_versions():
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_wheel_holds_the_package_and_its_license_but_no_tests(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        licenses = [n for n in names if ".dist-info/" in n and n.rsplit("/", 1)[-1] == "LICENSE"]
        assert licenses, names  # dist-info/LICENSE (older setuptools) or dist-info/licenses/LICENSE
        assert "Apache License" in zf.read(licenses[0]).decode()
    assert "tfrobust/__init__.py" in names
    assert "tfrobust/attacks/_pgd.py" in names
    assert not [n for n in names if n.split("/")[0] in ("tests", "benchmarks", "colab", "scripts", "docs")]
    assert wheel.stat().st_size < 2_000_000


def test_wheel_metadata_declares_python_3_11_to_3_13_and_ranges_not_pins(wheel):
    meta = _metadata(wheel)
    assert meta["License"] == "Apache-2.0" or meta["License-Expression"] == "Apache-2.0"
    assert meta["License-File"] == "LICENSE"
    python = meta["Requires-Python"]
    assert [v for v in ("3.10", "3.11", "3.12", "3.13", "3.14") if v in SpecifierSet(python)] == [
        "3.11", "3.12", "3.13"]
    for version in ("3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in meta.get_all("Classifier")
    pinned = [str(r) for r in _runtime_requirements(meta) if any(s.operator == "==" for s in r.specifier)]
    assert not pinned, f"install_requires pins {pinned}: exact pins belong in requirements.lock"


def test_requirements_lock_satisfies_every_runtime_range(wheel):
    """The two README commands install requirements.lock as constraints: it must fit the ranges."""
    locked = _locked_versions()
    for req in _runtime_requirements(_metadata(wheel)):
        version = locked.get(canonicalize_name(req.name))
        assert version is not None, f"{req.name} is not pinned in requirements.lock"
        assert req.specifier.contains(version, prereleases=True), f"locked {version}, outside {req}"


_SMOKE = """
import os, sys
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
import numpy as np
import tfrobust
from tfrobust import attacks, keras
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.layers.Flatten(input_shape=(4, 4, 1)), keras.layers.Dense(3)])
x = np.random.default_rng(0).uniform(size=(8, 4, 4, 1)).astype("float32")
x_adv = np.asarray(attacks.fgsm(model, x, eps=0.1))
assert x_adv.shape == x.shape and np.abs(x_adv - x).max() <= 0.1 + 1e-6, np.abs(x_adv - x).max()
from importlib.metadata import distribution
(script,) = [e for e in distribution("tfrobust").entry_points if e.group == "console_scripts"]
assert script.name == "tfrobust" and callable(script.load()), script  # the wheel holds its target
print(tfrobust.__file__)
print(tfrobust.__version__)
"""


def test_wheel_installs_into_a_clean_venv_and_runs_fgsm(wheel, tmp_path):
    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run(python, "-c", purelib).stdout.strip())
    # The dependencies (not tfrobust) come from the test's own environment: appended to sys.path
    # after the new venv's site-packages, whose copy of tfrobust therefore wins.
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_tfrobust_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index",
         "--ignore-installed", wheel)
    assert (env_dir / "bin" / "tfrobust").exists()  # the console script; its target is loaded below

    run_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    run_env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    out = _run(python, "-c", _SMOKE, cwd=tmp_path, env=run_env, timeout=300)
    module_file, version = out.stdout.strip().splitlines()[-2:]
    assert Path(module_file).is_relative_to(site), module_file  # from the wheel, not the repo
    assert not Path(module_file).is_relative_to(ROOT)
    assert wheel.name == f"tfrobust-{version}-py3-none-any.whl"
