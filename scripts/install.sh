#!/usr/bin/env bash
# Install the gpufleet agent on a node: find its accelerators, install the agent into a venv (from
# PyPI, or offline from a wheel file or folder), then its systemd unit (`gpufleet service install
# agent`). Prints what it found and every step before doing it; --dry-run only prints.
# docs/install.md describes it.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: install.sh --hub URL [options]

  --hub URL          the hub the agent pushes to (needed for the unit)
  --token-file FILE  the hub's join token (a file, mode 0600), handed to the unit
  --enable           start the unit now and at every boot
  --wheel PATH       install offline from this wheel file, or a folder of wheels, with every
                     dependency in the same folder (`pip download gpufleet -d DIR` makes one)
  --version VERSION  the gpufleet version from PyPI (default: the newest)
  --prefix DIR       the venv to install into (default /opt/gpufleet)
  --python PYTHON    the Python 3.11+ to make the venv with (default python3)
  --no-service       install the agent only, no systemd unit (then --hub is not needed)
  --unit-dir DIR     write the unit there instead of /etc/systemd/system (an image, a review)
  --config-dir DIR   keep the token and agent.env there instead of /etc/gpufleet
  --dry-run          print what was found and every step; change nothing
  -h, --help         this text
EOF
}

die() { echo "install.sh: error: $*" >&2; exit 2; }
show() { local q; q=$(printf '%q ' "$@"); echo "${q% }"; }  # a command as one would type it

HUB="" TOKEN_FILE="" ENABLE=0 WHEEL="" VERSION="" PREFIX=/opt/gpufleet PY=python3 SERVICE=1 DRY=0
UNIT_DIR="" CONFIG_DIR=""
while [ $# -gt 0 ]; do
  opt=$1
  case $opt in
    -h|--help) usage; exit 0 ;;
    --enable) ENABLE=1; shift; continue ;;
    --no-service) SERVICE=0; shift; continue ;;
    --dry-run) DRY=1; shift; continue ;;
    --hub|--token-file|--wheel|--version|--prefix|--python|--unit-dir|--config-dir)
      [ $# -ge 2 ] && [ -n "$2" ] && [ "${2#--}" = "$2" ] || die "$opt needs a value (see --help)"
      case $opt in
        --hub) HUB=$2 ;; --token-file) TOKEN_FILE=$2 ;; --wheel) WHEEL=$2 ;; --version) VERSION=$2 ;;
        --prefix) PREFIX=$2 ;; --python) PY=$2 ;; --unit-dir) UNIT_DIR=$2 ;; --config-dir) CONFIG_DIR=$2 ;;
      esac
      shift 2 ;;
    --hub=*|--token-file=*|--wheel=*|--version=*|--prefix=*|--python=*|--unit-dir=*|--config-dir=*)
      set -- "${opt%%=*}" "${opt#*=}" "${@:2}" ;;
    *) die "unknown option $opt (see --help)" ;;
  esac
done

# ---- checks: everything a step needs, before any step runs ---------------------------------------

if [ $SERVICE = 1 ]; then
  [ -n "$HUB" ] || die "--hub URL is needed for the agent's unit (or --no-service to install the agent only)"
  case $HUB in http://?*|https://?*) ;; *) die "--hub $HUB: give the hub's URL, e.g. http://hub.example:8080" ;; esac
  # The whole shape, so a typo fails here and not at the last step, after the venv and pip install.
  [[ $HUB =~ ^https?://([A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(/[^[:space:]?#]*)?$ ]] \
    || die "--hub $HUB: give the hub's URL as http(s)://HOST[:PORT], e.g. http://hub.example:8080"
else
  [ $ENABLE = 0 ] || die "--enable starts the unit: it cannot go with --no-service"
  [ -z "$HUB$TOKEN_FILE$UNIT_DIR$CONFIG_DIR" ] || die "--hub, --token-file, --unit-dir and --config-dir are for the unit: not with --no-service"
fi
[ -z "$TOKEN_FILE" ] || [ -r "$TOKEN_FILE" ] || die "--token-file $TOKEN_FILE does not exist or cannot be read"
[ -z "$WHEEL" ] || [ -z "$VERSION" ] || die "--version is for PyPI installs: with --wheel the file decides"
[ -z "$VERSION" ] || [[ $VERSION =~ ^[0-9][A-Za-z0-9.+!-]*$ ]] \
  || die "--version $VERSION is not a version number (e.g. 0.1.0)"
case $PREFIX in /*) ;; *) PREFIX="$(pwd)/$PREFIX" ;; esac
PY_PATH=$(command -v "$PY" 2>/dev/null) || die "$PY not found: install Python 3.11 or newer, or pass --python PATH"
"$PY_PATH" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
  || die "gpufleet needs Python 3.11 or newer ($PY_PATH is $("$PY_PATH" --version 2>&1)): pass --python PATH"
"$PY_PATH" -c 'import venv, ensurepip' 2>/dev/null \
  || die "$PY_PATH cannot make a venv (Debian/Ubuntu: apt-get install python3-venv)"

FIND_LINKS=""
if [ -n "$WHEEL" ]; then
  if [ -d "$WHEEL" ]; then
    FIND_LINKS=$(cd "$WHEEL" && pwd)
    # the newest gpufleet wheel in the folder (sort -V orders versions)
    WHEEL_FILE=$(find "$FIND_LINKS" -maxdepth 1 -name 'gpufleet-*.whl' | sort -V | tail -n 1)
    [ -n "$WHEEL_FILE" ] || die "--wheel $WHEEL: no gpufleet-*.whl in this folder"
  elif [ -f "$WHEEL" ]; then
    case $WHEEL in *.whl) ;; *) die "--wheel $WHEEL is not a wheel (.whl) file or a folder of them" ;; esac
    WHEEL_FILE="$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")"
    FIND_LINKS=$(dirname "$WHEEL_FILE")
  else
    die "--wheel $WHEEL does not exist"
  fi
fi

# ---- what is on this node -----------------------------------------------------------------------

echo "gpufleet install: accelerators on $(hostname)"
FOUND=""
count() {  # count TOOL PATTERN ARGS...: how many lines of `TOOL ARGS` match PATTERN, or why none
  local tool=$1 pattern=$2 out
  shift 2
  if out=$(timeout 20 "$tool" "$@" 2>&1); then
    echo "($(printf '%s\n' "$out" | grep -c -- "$pattern") devices)"
  else
    echo "(it did not answer: $(printf '%s\n' "$out" | head -n 1))"
  fi
}
for tool in nvidia-smi amd-smi rocm-smi hl-smi tt-smi all-smi; do
  path=$(command -v "$tool" 2>/dev/null || true)
  if [ -z "$path" ]; then
    printf '  %-11s not found\n' "$tool"
    continue
  fi
  FOUND="$FOUND $tool"
  case $tool in
    nvidia-smi) what=$(count "$path" '^GPU [0-9]' -L) ;;
    amd-smi) what=$(count "$path" '^GPU: *[0-9]' list) ;;
    *) what="" ;;
  esac
  printf '  %-11s %s %s\n' "$tool" "$path" "$what"
done
has() { case " $FOUND " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

EXTRA="" BACKEND="" NOTES=()
if has nvidia-smi; then
  NOTES+=("NVIDIA: the agent reads the GPUs through NVML (nvidia-ml-py, part of the install)")
fi
if has amd-smi || has rocm-smi; then
  EXTRA="[amd]"
  NOTES+=("AMD: the agent reads the GPUs through AMD SMI's Python bindings: installing gpufleet[amd]")
fi
if ! has nvidia-smi && ! has amd-smi && ! has rocm-smi; then
  if has all-smi; then
    BACKEND=all-smi
    NOTES+=("the agent reads every device all-smi reports (--backend all-smi): keep \`all-smi api\` running on this node (its default port, 9090)")
  elif has hl-smi || has tt-smi; then
    NOTES+=("Gaudi/Tenstorrent: gpufleet reads them through all-smi, which is not installed: install it and run \`all-smi api\`, then set GPUFLEET_BACKEND=all-smi in agent.env; until then the agent reports the host only")
  else
    NOTES+=("no accelerator tools found: the agent reports the host (and finds NVIDIA or AMD libraries by itself if they appear)")
  fi
fi
for n in "${NOTES[@]}"; do echo "  -> $n"; done

# ---- the plan -----------------------------------------------------------------------------------

PIP=("$PREFIX/bin/python" -m pip install --disable-pip-version-check --quiet)
if [ -n "$WHEEL" ]; then
  PIP+=(--no-index --find-links "$FIND_LINKS" "$WHEEL_FILE$EXTRA")
  FROM="offline from $WHEEL_FILE (dependencies from $FIND_LINKS)"
else
  PIP+=("gpufleet$EXTRA${VERSION:+==$VERSION}")
  FROM="from PyPI"
fi
SVC=("$PREFIX/bin/gpufleet" service install agent --hub "$HUB")
[ -z "$TOKEN_FILE" ] || SVC+=(--token-file "$TOKEN_FILE")
[ -z "$UNIT_DIR" ] || SVC+=(--unit-dir "$UNIT_DIR")
[ -z "$CONFIG_DIR" ] || SVC+=(--config-dir "$CONFIG_DIR")
[ $ENABLE = 0 ] || SVC+=(--enable)
ENV_FILE="${CONFIG_DIR:-/etc/gpufleet}/agent.env"

STEPS=()
if [ -x "$PREFIX/bin/python" ]; then
  STEPS+=("venv:keep the venv $PREFIX (it exists)")
else
  STEPS+=("venv:create the venv $PREFIX with $PY_PATH ($("$PY_PATH" --version 2>&1))")
fi
STEPS+=("pip:install the agent $FROM: $(show "${PIP[@]}")")
if [ $SERVICE = 1 ]; then
  [ -z "$BACKEND" ] || STEPS+=("env:set GPUFLEET_BACKEND=$BACKEND in $ENV_FILE (kept as it is if the file exists)")
  STEPS+=("unit:install the agent's systemd unit: $(show "${SVC[@]}")")
fi

echo "Plan:"
i=0
for s in "${STEPS[@]}"; do i=$((i + 1)); echo "  $i. ${s#*:}"; done
if [ $DRY = 1 ]; then
  echo "(dry run: nothing was changed)"
  exit 0
fi

# ---- doing it -----------------------------------------------------------------------------------

parent=$PREFIX
while [ ! -e "$parent" ]; do parent=$(dirname "$parent"); done
[ -w "$parent" ] || die "cannot write $PREFIX: run this as root (sudo), or choose --prefix DIR"

for s in "${STEPS[@]}"; do
  echo "==> ${s#*:}"
  case ${s%%:*} in
    venv) [ -x "$PREFIX/bin/python" ] || "$PY_PATH" -m venv "$PREFIX" ;;
    pip)
      if ! "${PIP[@]}"; then
        if [ -n "$WHEEL" ]; then
          die "pip could not install from $FIND_LINKS: the folder needs every dependency's wheel too (on a machine with network: \`pip download '$WHEEL_FILE$EXTRA' -d DIR\`)"
        fi
        die "pip could not install gpufleet$EXTRA from PyPI (no network? use --wheel PATH)"
      fi ;;
    env)
      if [ -e "$ENV_FILE" ]; then
        grep -q '^GPUFLEET_BACKEND=' "$ENV_FILE" \
          || echo "  note: $ENV_FILE exists and is left as it is: add GPUFLEET_BACKEND=$BACKEND to it"
      else
        mkdir -p "$(dirname "$ENV_FILE")"
        printf '# Written by gpufleet install.sh: all-smi serves this node'"'"'s devices.\nGPUFLEET_BACKEND=%s\n' "$BACKEND" > "$ENV_FILE"
      fi ;;
    unit) "${SVC[@]}" ;;
  esac
done
echo "gpufleet agent installed in $PREFIX ($("$PREFIX/bin/gpufleet" --version))."
