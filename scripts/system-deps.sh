#!/usr/bin/env bash
# Installs the Debian packages kiosk needs, when missing. Usage: system-deps.sh zbar|chromium
# zbar: pyzbar's library (the fallback QR decoder). chromium: headless browser tests of the door
# screen and the dashboard, with a CJK font so the Chinese text renders instead of empty boxes.
set -euo pipefail
want="$1"
case "$want" in
# grep reads to the end (no -q): with pipefail, a writer cut off by SIGPIPE would read as absent.
  zbar)     present() { ldconfig -p 2>/dev/null | grep 'libzbar\.so\.0' >/dev/null; }; pkgs="libzbar0" ;;
  chromium) present() { command -v chromium >/dev/null 2>&1 && fc-list :lang=zh 2>/dev/null | grep . >/dev/null; }
            pkgs="chromium fonts-wqy-zenhei fontconfig" ;;
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
# shellcheck disable=SC2086  # the list is meant to split into words
apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
present || { echo "installing '$pkgs' did not make it available" >&2; exit 2; }
