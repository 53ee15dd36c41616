#!/usr/bin/env bash
# The whole test suite on a fresh machine: system packages, Python packages, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/bootstrap.sh test
exec .venv/bin/python -m pytest "$@"
