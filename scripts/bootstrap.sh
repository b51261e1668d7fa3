#!/usr/bin/env bash
# Sets up everything `make demo` and `make test` need on a fresh machine; quick when already done.
# - as root: Debian packages for headless MuJoCo rendering (EGL, OSMesa) when missing
# - .venv with a CPU-friendly torch pinned first (so no multi-GB CUDA build is pulled by accident)
# - the hilserl package itself, editable, with its test extras
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for pkg in libegl1 libgl1 libosmesa6 libgles2; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "[bootstrap] installing Debian packages: ${missing[*]}"
    apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || echo "[bootstrap] warning: could not install ${missing[*]}; rendering falls back to whatever GL is present"
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[bootstrap] creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "[bootstrap] installing $TORCH_SPEC"
  "${PIP[@]}" install "$TORCH_SPEC" 2> >(grep -v "^WARNING: Location" >&2)
fi
echo "[bootstrap] installing hilserl and its dependencies"
"${PIP[@]}" install -e ".[test]" 2> >(grep -v "^WARNING: Location" >&2)
touch "$VENV/.installed"
