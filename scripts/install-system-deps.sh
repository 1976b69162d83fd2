#!/bin/sh
# Install the Debian packages Rollcall's tests (and demo) need, only those missing.
# Usage: scripts/install-system-deps.sh demo|test
set -eu

want="python3 python3-venv python3-dev gcc make"
if [ "${1:-test}" = "test" ]; then
    # mosquitto: real broker for integration tests; postgresql: second database;
    # pcscd + vsmartcard-vpcd: real PC/SC stack with a virtual reader;
    # libpcsclite-dev + swig: to build pyscard; chromium: browser tests.
    # libusb-1.0-0: nfcpy loads it on import, even for its udp driver.
    # docker-compose: validates deploy/docker-compose.yml (no engine runs here).
    # fonts-wqy-microhei: Chinese glyphs in Chromium (browser tests, docs/screenshots).
    want="$want mosquitto postgresql pcscd libpcsclite-dev vsmartcard-vpcd swig libusb-1.0-0 chromium docker-compose fonts-wqy-microhei"
fi

missing=""
for pkg in $want; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done

if [ -z "$missing" ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages:$missing — run as root or install them with apt-get" >&2
    exit 1
fi
echo "installing:$missing"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
