#!/bin/sh
# Install the distribution packages up needs, if any is missing.
# Build: gcc, make, liburing-dev, libcriterion-dev, node-llhttp (llhttp's C
# sources), libwslay-dev (WebSocket framing, the worker's); pkg-config and
# help2man for make install (and its test); python3 for the tests that read
# up-run's JSON; node and npm for the tests that drive WebSockets with the
# npm package ws. Benchmarks only: wrk, nginx, haproxy.
set -eu
need=""
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
for p in gcc make liburing-dev libcriterion-dev node-llhttp libwslay-dev pkg-config help2man \
    python3 \
    ${UP_EXTRA_PKGS:-}; do
    have_pkg "$p" || need="$need $p"
done
# node and npm by command: a node installed otherwise (with its own npm)
# serves as well, and Debian's npm package would conflict with it.
command -v node >/dev/null 2>&1 || need="$need nodejs"
command -v npm >/dev/null 2>&1 || need="$need npm"
[ -z "$need" ] && exit 0
echo "up: installing missing packages:$need" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! command -v apt-get >/dev/null 2>&1; then
    echo "up: apt-get not found; install these packages yourself:$need" >&2
    exit 1
fi
if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need; }; then
    echo "up: could not install:$need (run as root or with sudo, or install them by hand)" >&2
    exit 1
fi
