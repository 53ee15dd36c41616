#!/usr/bin/env bash
# Installs gpufleet into .venv and runs the embedded default: hub + local agent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh hub
# Where this machine has no accelerator, a simulated fleet of 16 nodes joins the demo.
exec .venv/bin/gpufleet up --simulate-if-no-gpu 16 "$@"
