#!/usr/bin/env bash
# Creates .venv and installs gpufleet into it (with the extras named in $1, e.g. "test").
# Safe to run again: pip only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "gpufleet needs Python 3.11 or newer (found: $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
extras=${1:-}
spec="."
[ -n "$extras" ] && spec=".[$extras]"
# The web UI's libraries (uPlot, Swagger UI) come from the npm registry, pinned by package-lock.json.
if [ -f package-lock.json ] && { [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; }; then
  if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    else
      echo "gpufleet's web UI needs npm to install its chart library: install Node.js and npm, then run this again" >&2
      exit 2
    fi
  fi
  # --ignore-scripts: the libraries are plain files; no install script (swagger-ui-dist's pulls in
  # an analytics hook) runs here.
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  touch node_modules
fi
# After npm: building the package copies the web UI's libraries out of node_modules (setup.py).
.venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec"
