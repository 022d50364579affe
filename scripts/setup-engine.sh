#!/usr/bin/env bash
# Make sure a Docker engine answers and the helper images exist.
# Installs Debian's docker.io when no engine answers, starts dockerd in the background,
# waits for it, and builds the helper images offline (no registry needed):
# - busybox:stable: Debian's busybox-static and its applet links.
# - opskit-helper:gnu-tar (opskit's default): the same, with Debian's GNU tar as /bin/tar, plus
#   the libraries `ldd` names and the dynamic loader. GNU tar keeps what busybox tar loses
#   (large owners, xattrs, ACLs, sparse files, exact mtimes).
# OPSKIT_HELPER_IMAGE, if set to another name, is made ready too (pulled, or built with GNU tar).
# Idempotent: safe to run again; an image that exists is left as it is.
set -euo pipefail

BUSYBOX_IMAGE="busybox:stable"
GNU_TAR_IMAGE="opskit-helper:gnu-tar"
EXTRA_IMAGE="${OPSKIT_HELPER_IMAGE:-}"
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

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A root folder with busybox and its applets, in $work/$1.
busybox_root() {
  local root="$work/$1"
  [ -x /bin/busybox ] || apt_install busybox-static
  mkdir -p "$root/bin" "$root/tmp" "$root/etc"
  chmod 1777 "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
  echo 'root:x:0:' >"$root/etc/group"
  printf '%s\n' "$root"
}

import_root() { # folder image
  tar -C "$1" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["sh"]' - "$2" >/dev/null
}

build_busybox() {
  say "no registry: building $1 from Debian's busybox-static"
  import_root "$(busybox_root busybox)" "$1"
}

build_gnu_tar() {
  say "building $1 from Debian's busybox-static and GNU tar"
  command -v ldd >/dev/null 2>&1 || apt_install libc-bin
  local tar_binary root library
  tar_binary=$(readlink -f "$(command -v tar)")
  "$tar_binary" --version | head -n 1 | grep -q 'GNU tar' || apt_install tar
  root=$(busybox_root gnu-tar)
  rm -f "$root/bin/tar"
  cp "$tar_binary" "$root/bin/tar"
  # Every library at the path ldd names, and the loader (the line without "=>") likewise:
  # the binary asks for them by those paths. cp -L: the files, not the host's symlinks.
  for library in $(ldd "$tar_binary" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
    mkdir -p "$root$(dirname "$library")"
    cp -L "$library" "$root$library"
  done
  # The image must run GNU tar, or opskit would silently fall back to busybox's fidelity.
  import_root "$root" "$1"
  docker run --rm --network none "$1" tar --version | head -n 1 | grep -q 'GNU tar' || {
    docker image rm "$1" >/dev/null 2>&1 || true
    say "the built $1 does not run GNU tar"; exit 1; }
}

if ! image_exists "$BUSYBOX_IMAGE"; then
  docker pull "$BUSYBOX_IMAGE" >/dev/null 2>&1 || build_busybox "$BUSYBOX_IMAGE"
fi
say "helper image $BUSYBOX_IMAGE is ready"

# A local name: never in a registry, so there is nothing to pull.
image_exists "$GNU_TAR_IMAGE" || build_gnu_tar "$GNU_TAR_IMAGE"
say "helper image $GNU_TAR_IMAGE is ready (opskit's default)"

if [ -n "$EXTRA_IMAGE" ] && ! image_exists "$EXTRA_IMAGE"; then
  docker pull "$EXTRA_IMAGE" >/dev/null 2>&1 || build_gnu_tar "$EXTRA_IMAGE"
  say "helper image $EXTRA_IMAGE is ready"
fi
