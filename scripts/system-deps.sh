#!/usr/bin/env bash
# Installs the real servers the tests run against, from Debian's packages (root needed).
set -euo pipefail
pkgs=(prometheus prometheus-node-exporter prometheus-alertmanager victoria-metrics chromium tmux
      systemd)  # systemd: systemd-analyze verify checks the units `gpufleet service install` writes
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
