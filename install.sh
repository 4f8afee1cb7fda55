#!/usr/bin/env bash
# Installs fleetdeck into .venv (Debian: adds python3-venv first when it is missing).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if ! "$PY" -c "import ensurepip, venv" 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq python3-venv
  else
    sudo apt-get install -y -qq python3-venv
  fi
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
echo "installed: .venv/bin/fleetdeck"
