#!/usr/bin/env bash
# The whole test suite on a fresh machine: system packages, Python packages, types, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/bootstrap.sh hub,test
# Types first (seconds, and a type error is a bug pytest may not reach): [tool.mypy] in
# pyproject.toml checks src/gpufleet in strict mode.
.venv/bin/python -m mypy
exec .venv/bin/python -m pytest "$@"
