#!/usr/bin/env bash
# Make sure a Docker engine answers and the helper image exists.
# Installs Debian's docker.io when no engine answers, starts dockerd in the background,
# waits for it, and builds the helper image from busybox-static (no registry needed).
# Idempotent: safe to run again.
set -euo pipefail

HELPER_IMAGE="${OPSKIT_HELPER_IMAGE:-busybox:stable}"
LOG_DIR="${OPSKIT_SETUP_LOG_DIR:-/var/log}"

say() { printf 'setup-engine: %s\n' "$*" >&2; }

engine_answers() { docker info >/dev/null 2>&1; }

apt_install() {
  if [ "$(id -u)" != 0 ]; then say "need root to install: $*"; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1; then
    apt-get update >/dev/null
    apt-get install -y --no-install-recommends "$@" >/dev/null
  fi
}

if ! engine_answers; then
  if ! command -v dockerd >/dev/null 2>&1; then
    say "installing docker.io"
    apt_install docker.io
  fi
  if ! engine_answers; then
    say "starting dockerd (log: $LOG_DIR/dockerd.log)"
    # setsid: the engine must outlive this script and the shell that ran it.
    setsid dockerd >"$LOG_DIR/dockerd.log" 2>&1 < /dev/null &
    for _ in $(seq 1 60); do
      engine_answers && break
      sleep 0.5
    done
    engine_answers || { say "dockerd did not come up; see $LOG_DIR/dockerd.log"; exit 1; }
  fi
fi
say "engine is up ($(docker version --format '{{.Server.Version}}'))"

if ! docker image inspect "$HELPER_IMAGE" >/dev/null 2>&1; then
  if ! docker pull "$HELPER_IMAGE" >/dev/null 2>&1; then
    say "no registry: building $HELPER_IMAGE from Debian's busybox-static"
    [ -x /bin/busybox ] || apt_install busybox-static
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    mkdir -p "$root/bin" "$root/tmp" "$root/etc"
    cp /bin/busybox "$root/bin/busybox"
    for applet in $(/bin/busybox --list); do
      [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
    done
    echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
    echo 'root:x:0:' >"$root/etc/group"
    tar -C "$root" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["sh"]' - "$HELPER_IMAGE" >/dev/null
  fi
fi
say "helper image $HELPER_IMAGE is ready"
