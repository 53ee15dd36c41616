#!/usr/bin/env bash
# Installs gpufleet into .venv and runs the embedded default: hub + local agent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/gpufleet up "$@"
