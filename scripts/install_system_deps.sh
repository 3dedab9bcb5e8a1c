#!/usr/bin/env bash
# Installs the Debian packages the app and its tests need, only when they are missing:
# redis-server (queue); with --with-browser (make test) also chromium (browser tests) and
# postgresql (the spend-ledger race test on a real PostgreSQL). Needs root or sudo for apt-get.
set -euo pipefail
want=()
command -v redis-server >/dev/null 2>&1 || want+=(redis-server)
if [ "${1:-}" = "--with-browser" ]; then  # what only `make test` needs
  # The tests run initdb/pg_ctl from /usr/lib/postgresql/*/bin themselves (tests/conftest.py: postgres_server).
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || want+=(postgresql)
  [ -x /usr/bin/chromium ] || want+=(chromium)
  fc-list 2>/dev/null | grep -qi dejavu || want+=(fonts-dejavu-core)
fi
[ ${#want[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "Installing Debian packages: ${want[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
