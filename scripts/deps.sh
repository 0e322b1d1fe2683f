#!/bin/sh
# Installs the Debian packages alignd needs that are missing.
# usage: scripts/deps.sh build|test
# Runs 'apt-get update' once, and only when something has to be installed.
set -eu

BUILD_PKGS="gcc libc6-dev pkg-config meson ninja-build
  libuv1-dev libunbound-dev libopendkim-dev libmsgpack-dev libspf2-dev
  libpsl-dev publicsuffix libidn2-dev libmilter-dev libssl-dev libjansson-dev
  libxml2-dev zlib1g-dev libcurl4-openssl-dev libsqlite3-dev libpq-dev
  dns-root-data libsystemd-dev scdoc"
TEST_PKGS="$BUILD_PKGS python3 python3-yaml python3-dkim python3-dnspython
  python3-msgpack python3-authres python3-nacl python3-cryptography openssl
  netcat-openbsd nsd ldnsutils libxml2-utils postgresql sqlite3
  postfix swaks libnss-wrapper m4 iproute2 valgrind clang libclang-rt-14-dev
  debhelper dpkg-dev lintian prometheus gnuplot-nox"

case "${1:-build}" in
  build) want=$BUILD_PKGS ;;
  test)  want=$TEST_PKGS ;;
  *) echo "usage: $0 build|test" >&2; exit 64 ;;
esac

missing=""
for p in $want; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "alignd: missing Debian packages:$missing" >&2
  echo "alignd: run this as root, or install them with apt-get" >&2
  exit 1
fi
echo "alignd: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
case " $missing " in
  *" postfix "*)
    # The end-to-end tests run private Postfix instances only: install it
    # unconfigured (no /etc/postfix/main.cf), so no system mail server starts.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections ;;
esac
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
