#!/usr/bin/env bash
# The main job on its embedded default: set up, create a demo volume, back it up to ./backups,
# restore it into a new volume, and show that the two trees match entry by entry.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

opskit=.venv/bin/opskit
demo="opskit-demo"
restored="opskit-demo-restored-$$"
helper="${OPSKIT_HELPER_IMAGE:-busybox:stable}"
cleanup() { docker volume rm -f "$demo" "$restored" >/dev/null 2>&1 || true; }
trap cleanup EXIT

# A small tree with what restores usually get wrong: owners, modes, links, odd names.
docker volume rm -f "$demo" >/dev/null 2>&1 || true
docker volume create "$demo" >/dev/null
docker run --rm -v "$demo:/data" "$helper" sh -c '
  set -e; cd /data
  mkdir -p pgdata/base "empty dir" "deep/a/b/c/d/e"
  echo "max_connections = 100" > pgdata/postgresql.conf
  head -c 200000 /dev/urandom > pgdata/base/16384
  chown -R 999:999 pgdata; chmod 700 pgdata; chmod 600 pgdata/postgresql.conf
  echo hello > "name with spaces & \"quotes\""; echo unicode > "ünïcødé-名前"
  echo dash > ./-leading-dash
  ln -s pgdata/postgresql.conf relative-link; ln -s /nonexistent dangling-link
  ln pgdata/base/16384 hardlink-to-16384
  mkfifo a-fifo; touch setuid; chmod 4755 setuid; mkdir sticky; chmod 1777 sticky
  touch -d "2001-02-03 04:05:06" old-file
  chown 999:999 /data; chmod 750 /data'

echo "== backup"
"$opskit" volume backup "$demo" --to ./backups
echo "== list"
"$opskit" volume list --from ./backups --volume "$demo"
echo "== restore into a new volume"
"$opskit" volume restore "$demo" --from ./backups --into "$restored"

echo "== compare (type, mode, uid:gid, size, mtime, link target, content hash)"
listing() {
  docker run --rm -v "$1:/data:ro" "$helper" sh -c '
    cd /data && find . | sort | while IFS= read -r entry; do
      kind=$(stat -c %F "$entry")
      hash=""; [ -f "$entry" ] && [ ! -L "$entry" ] && hash=$(sha256sum "$entry" | cut -c1-16)
      link=""; [ -L "$entry" ] && link=$(readlink "$entry")
      # busybox tar restores file mtimes, not those of directories and symlinks
      mtime=$(stat -c %Y "$entry"); { [ -d "$entry" ] || [ -L "$entry" ]; } && mtime=-
      echo "$entry|$kind|$(stat -c %a "$entry")|$(stat -c %u:%g "$entry")|$(stat -c %h "$entry")|$mtime|$link|$hash"
    done'
}
if diff <(listing "$demo") <(listing "$restored"); then
  echo "OK: $(listing "$demo" | wc -l) entries of $demo and $restored match"
else
  echo "MISMATCH between $demo and $restored" >&2
  exit 1
fi
