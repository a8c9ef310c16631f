#!/bin/sh
# Run nginx in the foreground: nginx-run.sh [WATCHED_FILE]
#
# With a file to watch (the certificate chain an ACME client renews on a volume nginx reads),
# a watcher beside nginx reloads it gracefully when the file changes: new connections get the
# new certificate, open ones finish on the old. A change nginx refuses (`nginx -t`) is logged
# and not loaded, so nginx keeps serving what it has. Nothing outside the container signals it,
# so no container needs the Docker socket for renewals.
set -eu
nginx="${NGINX_COMMAND:?NGINX_COMMAND names how nginx runs here}"
watched="${1:-}"
interval="${WATCH_INTERVAL_S:-5}"

fingerprint() {
  md5sum <"$watched" 2>/dev/null || echo missing
}

watch_and_reload() {
  last=$(fingerprint)
  while sleep "$interval"; do
    now=$(fingerprint)
    [ "$now" = "$last" ] && continue
    last=$now
    # shellcheck disable=SC2086 # NGINX_COMMAND carries options (-e, -c)
    if checked=$($nginx -t 2>&1); then
      $nginx -s reload && echo "nginx-run: $watched changed; reloaded"
    else
      echo "nginx-run: $watched changed but nginx refused it, still serving the previous one: $(echo "$checked" | tr '\n' ' ')" >&2
    fi
  done
}

if [ -n "$watched" ]; then
  watch_and_reload &
fi
# shellcheck disable=SC2086
exec $nginx -g 'daemon off;'
