#!/bin/sh
# Export each file in the secrets directory as an environment variable named after the file,
# then exec the service. Secrets thus reach the process without ever being part of the
# container's configuration, where `docker inspect` would show them.
set -eu
dir="${ASTATS_SECRETS_DIR:-/run/secrets}"
for file in "$dir"/*; do
  [ -f "$file" ] || continue
  name=$(basename "$file")
  case "$name" in
    *[!A-Za-z0-9_]* | [0-9]*) echo "with-secrets: skipping $file: not a variable name" >&2; continue ;;
  esac
  value=$(cat "$file")
  export "$name=$value"
done
exec "$@"
