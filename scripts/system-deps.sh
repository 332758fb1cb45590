#!/usr/bin/env bash
# Installs the Debian packages kiosk needs, when missing. Usage: system-deps.sh zbar|chromium
set -euo pipefail
want="$1"
case "$want" in
  zbar)     present() { ldconfig -p 2>/dev/null | grep -q 'libzbar\.so\.0'; }; pkgs="libzbar0" ;;
  chromium) present() { command -v chromium >/dev/null 2>&1; }; pkgs="chromium" ;;
  *) echo "system-deps.sh: unknown dependency '$want'" >&2; exit 2 ;;
esac
present && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "kiosk needs the Debian package(s) '$pkgs': run 'sudo apt-get install -y $pkgs' and try again." >&2
  exit 2
fi
echo "installing Debian package(s): $pkgs ..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
present || { echo "installing '$pkgs' did not make it available" >&2; exit 2; }
