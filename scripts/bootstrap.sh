#!/usr/bin/env bash
# Install opskit into ./.venv (with test tools when given "test") and make sure a Docker engine
# and the helper image are ready. Works on a fresh Debian 12 as root; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'bootstrap: %s\n' "$*" >&2; }
extras="${1:-}"

if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  say "installing python3 and python3-venv"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update >/dev/null
  apt-get install -y --no-install-recommends python3 python3-venv python3-pip >/dev/null
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  say "opskit needs Python >= 3.11 (found $(python3 --version))"; exit 1; }

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  python3 -m venv .venv
fi
spec="."
[ "$extras" = test ] && spec=".[test]"
say "installing opskit ($spec) into .venv"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"

if [ "$extras" = test ]; then
  # The tests check interoperability with the age CLI (Debian's age) and SSH keys (ssh-keygen),
  # and set xattrs and ACLs on test trees (attr, acl).
  missing=()
  command -v age >/dev/null 2>&1 || missing+=(age)
  command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
  command -v setfattr >/dev/null 2>&1 || missing+=(attr)
  command -v setfacl >/dev/null 2>&1 || missing+=(acl)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} for the tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
      apt-get update >/dev/null
      apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
    }
  fi
fi

bash scripts/setup-engine.sh
