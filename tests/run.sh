#!/usr/bin/env bash
# Runs fleetdeck's tests: installs and prepares the real services the tests start
# (sshd, dockerd, Slurm + munge, Chromium, the fake NVML library), makes .venv, runs pytest.
# Extra arguments go to pytest, e.g. `bash tests/run.sh tests/unit -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
  bash .ci/services.sh
elif command -v sudo >/dev/null; then
  sudo bash .ci/services.sh
else
  echo "tests/run.sh: not root and no sudo: service tests will skip (fail under CI=true)" >&2
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,aws]'

.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
