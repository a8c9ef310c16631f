#!/bin/sh
# Start a service the way the stack needs it:
# - each file in the secrets directory becomes an environment variable named after the file,
#   so secrets reach the process without being part of the container's configuration, where
#   `docker inspect` would show them;
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

exec "$@"
