#!/usr/bin/env bash
# Debian packages the test suite drives as real peers and speech sources.
set -euo pipefail
PACKAGES=(sip-tester baresip kamailio espeak-ng sox chromium docker-compose)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "not root: cannot install Debian packages the tests need: ${missing[*]} (run: sudo apt-get install ${missing[*]}); tests needing them will be skipped" >&2
  exit 0
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
