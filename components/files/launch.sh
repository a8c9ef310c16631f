#!/bin/sh
# Start a service the way the stack needs it:
# - each file in the secrets directory becomes an environment variable named after the file,
#   so secrets reach the process without being part of the container's configuration, where
#   `docker inspect` would show them;
# - with ASTATS_DRAIN_SECONDS set, a stop (SIGTERM) is held back that long while the service
#   keeps serving: the container keeps its network alias until nginx has re-resolved the name
#   to the replacement, and only then is the service told to shut down.
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

drain="${ASTATS_DRAIN_SECONDS:-0}"
case "$drain" in
  '' | *[!0-9]*) echo "launch: ASTATS_DRAIN_SECONDS must be a whole number, not '$drain'" >&2; exit 64 ;;
esac
if [ "$drain" -eq 0 ]; then
  exec "$@"
fi

child=""
stopping=""
drain_then_stop() {
  [ -n "$stopping" ] && return
  stopping=1
  echo "launch: stop requested; serving ${drain}s more while the proxy moves on" >&2
  sleep "$drain"
  [ -z "$child" ] && exit 143
  kill -TERM "$child" 2>/dev/null || true
}
# Trapped before the service starts, so no stop can slip past the drain.
trap drain_then_stop TERM INT
"$@" &
child=$!
set +e
wait "$child"
status=$?
# A trapped signal interrupts `wait`; keep waiting for the service's own exit status.
while kill -0 "$child" 2>/dev/null; do
  wait "$child"
  status=$?
done
exit "$status"
