#!/usr/bin/env bash
# Sets up everything `make demo` and `make test` need on a fresh machine; quick when already done.
# - as root: Debian packages for headless MuJoCo rendering (EGL, OSMesa) when missing
# - `bootstrap.sh --browser` (what `make test` runs first), as root: only the headless browser that the console's
#   browser tests drive (chromium; those tests skip without it), so that `make demo` never downloads a browser
# - .venv with a CPU-friendly torch pinned first (so no multi-GB CUDA build is pulled by accident)
# - the hilserl package itself, editable, with its test extras
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

apt_missing() {  # the Debian packages among "$@" that are not installed
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
  done
}

apt_install() {  # apt_install WHAT-IF-IT-FAILS PACKAGE...
  local fallback=$1; shift
  local missing
  missing=$(apt_missing "$@")
  [ -n "$missing" ] || return 0
  echo "[bootstrap] installing Debian packages:" $missing
  apt-get update -qq >/dev/null || true
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null \
    || echo "[bootstrap] warning: could not install" $missing"; $fallback"
}

AS_ROOT_WITH_APT=false
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then AS_ROOT_WITH_APT=true; fi

if [ "${1:-}" = "--browser" ]; then
  if $AS_ROOT_WITH_APT; then apt_install "the console's browser tests skip without it" chromium; fi
  exit 0
fi

if $AS_ROOT_WITH_APT; then
  apt_install "rendering falls back to whatever GL is present" libegl1 libgl1 libosmesa6 libgles2
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
