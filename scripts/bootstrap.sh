#!/usr/bin/env bash
# Idempotent set-up: Debian's Fashion-MNIST package and a .venv with the pinned stack.
# Usage: scripts/bootstrap.sh [test]   ("test" adds the test extra: pytest, ruff)
set -euo pipefail
cd "$(dirname "$0")/.."

extra="${1:-}"
PYTHON="${PYTHON:-python3.11}"
DATA_DIR=/usr/share/datasets/fashion-mnist
VENV=.venv

say() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# 1. Python 3.11 ---------------------------------------------------------------------------
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  if command -v python3 >/dev/null 2>&1 && python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    PYTHON=python3
  else
    die "Python 3.11 is required (TensorFlow 2.21 wheels). Install it (e.g. apt-get install python3.11 python3.11-venv) or set PYTHON=/path/to/python3.11."
  fi
fi

# 2. Fashion-MNIST from Debian's package ----------------------------------------------------
if [ -n "${TFROBUST_DATA_DIR:-}" ] && [ -f "$TFROBUST_DATA_DIR/train-images-idx3-ubyte.gz" ]; then
  say "using Fashion-MNIST in \$TFROBUST_DATA_DIR=$TFROBUST_DATA_DIR"
elif [ -f "$DATA_DIR/t10k-labels-idx1-ubyte.gz" ]; then
  : # already installed
elif [ "$(id -u)" != 0 ]; then
  die "Fashion-MNIST is missing and this is not root. Run 'sudo apt-get install dataset-fashion-mnist', or put the four IDX .gz files in a folder and export TFROBUST_DATA_DIR=that/folder, then re-run."
elif ! command -v apt-get >/dev/null 2>&1; then
  die "Fashion-MNIST is missing and apt-get is not available (not Debian/Ubuntu). Put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz in a folder and export TFROBUST_DATA_DIR=that/folder."
else
  say "installing Debian package dataset-fashion-mnist"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; } \
    || die "apt-get could not install dataset-fashion-mnist (see 'apt-get install dataset-fashion-mnist' output)."
fi

# 3. The virtual environment, re-installed only when the dependency files change -------------
stamp="$VENV/.tfrobust-stamp"
want="$(cat setup.cfg pyproject.toml requirements.lock | sha256sum | cut -c1-16)-${extra}"
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV" || die "could not create a venv (on Debian: apt-get install python3-venv)."
fi
say "installing pinned dependencies into $VENV (about a minute on a cold cache)"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
spec="."
[ -n "$extra" ] && spec=".[$extra]"
"$VENV/bin/python" -m pip install -q -c requirements.lock -e "$spec" \
  || die "pip install failed (is PyPI reachable?)."
echo "$want" > "$stamp"
