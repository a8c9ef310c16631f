#!/bin/sh
# Start a service the way the stack needs it:
# - each file in the secrets directory becomes an environment variable named after the file,
#   so secrets reach the process without being part of the container's configuration, where
#   `docker inspect` would show them;
# - a directory the service shares with its group (ASTATS_SHARED_DIR: the backend's logs, which
#   the backup scheduler rotates as a member of that group) stays group-writable: what the
#   service writes is created so, and what it wrote before is made so;
# - then the service replaces the launcher as PID 1 and gets the stop signal itself: nginx has
#   already moved traffic off a container before it is stopped (components/switch.py).
set -eu
dir="${ASTATS_SECRETS_DIR:-/run/secrets}"
for file in "$dir"/*; do
  [ -f "$file" ] || continue
  name=$(basename "$file")
  case "$name" in
    *[!A-Za-z0-9_]* | [0-9]*) echo "launch: skipping $file: not a variable name" >&2; continue ;;
  esac
  value=$(cat "$file")
  export "$name=$value"
done

shared="${ASTATS_SHARED_DIR:-}"
if [ -n "$shared" ]; then
  umask 0002
  for path in "$shared" "$shared"/*; do
    if [ -O "$path" ]; then chmod g+rwX "$path"; fi
  done
fi

exec "$@"
