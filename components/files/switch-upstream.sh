#!/bin/sh
# Point one of nginx's upstreams at a new container: switch-upstream.sh SERVICE < servers
#
# stdin holds the upstream's `server ...;` lines. They replace UPSTREAM_DIR/SERVICE.conf, which
# nginx.conf includes in that service's upstream block. When an nginx master runs (PID_FILE),
# the new file must pass `nginx -t` (the new container's name must resolve from nginx), then a
# graceful reload moves every new request to it; old workers finish their requests. The script
# returns once new workers serve. Anything refused puts the previous file back, so traffic stays
# where it was. With no master running (nginx not started yet), the file is only put in place.
set -eu
service="${1:?usage: switch-upstream.sh SERVICE < servers}"
dir="${UPSTREAM_DIR:-/etc/nginx/astats-upstreams}"
pid_file="${PID_FILE:-/var/run/nginx.pid}"
# How nginx runs here (its config): NGINX, or the container's NGINX_COMMAND (nginx itself reads
# an NGINX variable, for inherited sockets, so the stack's container cannot carry one).
nginx="${NGINX:-${NGINX_COMMAND:-nginx}}"
wait_s="${SWITCH_WAIT_S:-20}"
live="$dir/$service.conf"

fail() {
  echo "switch-upstream: $service: $*" >&2
  exit 1
}

workers() {
  # The serving workers of master $1; a worker that is shutting down changes its title.
  for stat in /proc/[0-9]*/stat; do
    { read -r pid _ _ parent _ <"$stat"; } 2>/dev/null || continue
    [ "$parent" = "$1" ] || continue
    title=$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null) || continue
    case "$title" in
      *"shutting down"*) ;;
      "nginx: worker process"*) echo "$pid" ;;
    esac
  done
}

restore() {
  if [ -f "$live.prev" ]; then mv -f "$live.prev" "$live"; else rm -f "$live"; fi
}

mkdir -p "$dir"
cat >"$live.next"
grep -q '^ *server ' "$live.next" || { rm -f "$live.next"; fail "no server line on stdin"; }
if [ -f "$live" ]; then cp -p "$live" "$live.prev"; else rm -f "$live.prev"; fi
mv -f "$live.next" "$live"

master=$(cat "$pid_file" 2>/dev/null || true)
if [ -z "$master" ] || ! kill -0 "$master" 2>/dev/null; then
  rm -f "$live.prev"
  echo "switch-upstream: $service: nginx is not running; it starts on $(tr '\n' ' ' <"$live")"
  exit 0
fi

# shellcheck disable=SC2086 # NGINX may carry options (-c, -p)
if ! checked=$($nginx -t 2>&1); then
  restore
  fail "nginx refused the new upstream, traffic stays where it was: $(echo "$checked" | tr '\n' ' ')"
fi
old=$(workers "$master" | tr '\n' ' ')
# shellcheck disable=SC2086
$nginx -s reload
waited=0
while :; do
  serving=$(workers "$master")
  fresh=""
  for pid in $serving; do
    case " $old " in *" $pid "*) ;; *) fresh=1 ;; esac
  done
  stale=""
  for pid in $serving; do
    case " $old " in *" $pid "*) stale=1 ;; esac
  done
  [ -n "$fresh" ] && [ -z "$stale" ] && break
  if [ "$waited" -ge $((wait_s * 10)) ]; then
    restore
    # shellcheck disable=SC2086
    $nginx -s reload || true
    fail "nginx did not start workers on the new upstream within ${wait_s}s (see its log)"
  fi
  sleep 0.1
  waited=$((waited + 1))
done
rm -f "$live.prev"
echo "switch-upstream: $service: serving $(tr '\n' ' ' <"$live")"
