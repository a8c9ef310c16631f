#!/bin/bash
# The stack's ACME client: Debian's lego, HTTP-01 through the webroot nginx serves.
#
#   astats-acme run          obtain, then renew, forever; one log line per attempt
#   astats-acme placeholder  a self-signed pair, so nginx can start before the first issuance
#   astats-acme health       0 iff a real, unexpired certificate for ACME_DOMAINS is current
#                            and is the one nginx serves at ACME_SERVED_ADDRESS
#   astats-acme status       one JSON object: the certificate, the loop's record, what is served
#
# The certs volume (CERTS_DIR), which nginx mounts read-only:
#   lego/             lego's data: the account key, the last certificate it obtained (0700)
#   releases/<id>/    fullchain.pem and privkey.pem (0640: the group is nginx's), and `source`
#                     (the ACME directory it came from) or `placeholder` (self-signed)
#   current           a relative symlink to one release, replaced by a rename: nginx never
#                     reads half of a pair
#   status.json       the loop's record, written beside and renamed
set -euo pipefail
umask 027

CERTS_DIR=/var/lib/astats-acme
WEBROOT=/srv/astats-acme
LEGO_DIR="$CERTS_DIR/lego"
RELEASES="$CERTS_DIR/releases"
CURRENT="$CERTS_DIR/current"
STATUS="$CERTS_DIR/status.json"
PLACEHOLDER_DAYS=365
# One lego run: the account, the order, every challenge and the download.
LEGO_TIMEOUT_S=300
SERVED_TIMEOUT_S=5

say() { printf 'acme: %s\n' "$*"; }
fail() {
  printf 'acme: %s\n' "$1" >&2
  exit "${2:-1}"
}
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }
epoch() { date -u -d "$1" +%s; }

# JSON values. Strings lose their control characters: every value is one line of a log.
json_str() {
  local s
  s=$(printf '%s' "$1" | tr '\t\n\r' '   ' | LC_ALL=C tr -d '\000-\037')
  s=${s//\\/\\\\}
  printf '"%s"' "${s//\"/\\\"}"
}
json_list() {
  local out="" item
  for item in "$@"; do out+="${out:+, }$(json_str "$item")"; done
  printf '[%s]' "$out"
}
json_time() { if [ -n "$1" ]; then json_str "$(iso "$1")"; else printf null; fi; }
json_opt() { if [ -n "$1" ]; then json_str "$1"; else printf null; fi; }
json_bool() { if "$@"; then printf true; else printf false; fi; }

positive() {
  local name=$1 value=${!1:-$2}
  [[ $value =~ ^[0-9]+$ ]] && ((value > 0)) || fail "$name must be a positive integer, not '$value'" 64
  printf '%s' "$value"
}

read_settings() {
  : "${ACME_DOMAINS:?ACME_DOMAINS (space-separated host names) is not set}"
  read -r -a DOMAINS <<<"$ACME_DOMAINS"
  ((${#DOMAINS[@]} > 0)) || fail "ACME_DOMAINS names no host" 64
}

read_loop_settings() {
  read_settings
  : "${ACME_DIRECTORY:?ACME_DIRECTORY (the ACME directory URL) is not set}"
  : "${ACME_EMAIL:?ACME_EMAIL (the account contact) is not set}"
  RENEW_BEFORE_DAYS=$(positive ACME_RENEW_BEFORE_DAYS 30)
  CHECK_INTERVAL_S=$(positive ACME_CHECK_INTERVAL_S 43200)
  RETRY_MIN_S=$(positive ACME_RETRY_MIN_S 600)
  RETRY_MAX_S=$(positive ACME_RETRY_MAX_S 21600)
  if [ -n "${ACME_CA_FILE:-}" ] && [ ! -r "$ACME_CA_FILE" ]; then
    fail "ACME_CA_FILE $ACME_CA_FILE is not readable" 66
  fi
  # What a failure's backoff belongs to: another directory or other domains start afresh.
  REQUEST="$ACME_DIRECTORY ${DOMAINS[*]}"
}

# The current pair's certificate, and what it says of itself.
current_cert() { printf '%s' "$CURRENT/fullchain.pem"; }
has_current() { [ -s "$CURRENT/fullchain.pem" ] && [ -s "$CURRENT/privkey.pem" ]; }
is_placeholder() { [ -e "$CURRENT/placeholder" ]; }
cert_field() { openssl x509 -in "$1" -noout "${@:2}"; }
not_after() { epoch "$(cert_field "$1" -enddate | cut -d= -f2-)"; }
issuer() { cert_field "$1" -issuer -nameopt RFC2253 | sed 's/^issuer=//'; }
serial() { cert_field "$1" -serial | sed 's/^serial=//'; }
fingerprint() { openssl x509 -noout -fingerprint -sha256 | sed 's/^.*=//'; }
cert_domains() {
  cert_field "$1" -ext subjectAltName 2>/dev/null | { grep -o 'DNS:[^,[:space:]]*' || true; } |
    cut -c5- | sort -u
}
wanted_domains() { printf '%s\n' "${DOMAINS[@]}" | sort -u; }
covers_domains() { [ -z "$(comm -13 <(cert_domains "$1") <(wanted_domains))" ]; }
same_domains() { [ "$(cert_domains "$1")" = "$(wanted_domains)" ]; }

# The certificate nginx hands out for the first domain, as its fingerprint ("" if none).
served_fingerprint() {
  [ -n "${ACME_SERVED_ADDRESS:-}" ] || return 0
  timeout "$SERVED_TIMEOUT_S" openssl s_client -connect "$ACME_SERVED_ADDRESS" \
    -servername "${DOMAINS[0]}" </dev/null 2>/dev/null | fingerprint 2>/dev/null || true
}
served_matches() {
  local served
  served=$(served_fingerprint)
  [ -n "$served" ] && [ "$served" = "$(fingerprint <"$(current_cert)")" ]
}
serving_current() { has_current && served_matches; }

# Point `current` at releases/$1: a new symlink renamed over the old one (one rename(2)).
switch_to() {
  ln -sfn "releases/$1" "$CERTS_DIR/.current.next" && mv -T "$CERTS_DIR/.current.next" "$CURRENT"
}

# Only the current release and the one before stay.
prune_releases() {
  local keep=" $1 $2 " dir
  for dir in "$RELEASES"/*/ "$RELEASES"/.*.next/; do
    [ -d "$dir" ] || continue
    dir=${dir%/}
    case "$keep" in *" ${dir##*/} "*) ;; *) rm -rf -- "$dir" ;; esac
  done
}

prepare_dirs() {
  mkdir -p "$RELEASES"
  mkdir -p -m 0700 "$LEGO_DIR"
  rm -f "$CERTS_DIR/.current.next" "$CERTS_DIR/.status.json.next"
}

placeholder() {
  prepare_dirs
  if has_current; then
    say "a certificate is in place ($(readlink "$CURRENT")); no placeholder needed"
    return
  fi
  local next="$RELEASES/.placeholder.next"
  rm -rf -- "$next"
  mkdir -m 0750 "$next"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
    -days "$PLACEHOLDER_DAYS" -subj "/O=astats/CN=astats-acme placeholder" \
    -addext "subjectAltName=DNS:placeholder.invalid" \
    -keyout "$next/privkey.pem" -out "$next/fullchain.pem"
  chmod 0640 "$next/privkey.pem" "$next/fullchain.pem"
  printf 'self-signed, until the first certificate is obtained\n' >"$next/placeholder"
  rm -rf -- "$RELEASES/placeholder"
  mv -T "$next" "$RELEASES/placeholder"
  switch_to placeholder
  say "placeholder certificate in place (self-signed, until the first issuance)"
}

# Why a certificate must be obtained now; nothing (and 1) while the current one will do.
renewal_reason() {
  local now=$1 cert left
  cert=$(current_cert)
  if ! has_current; then
    echo "no certificate"
  elif is_placeholder; then
    echo "first issuance"
  elif [ "$(cat "$CURRENT/source" 2>/dev/null)" != "$ACME_DIRECTORY" ]; then
    echo "the ACME directory changed"
  elif ! same_domains "$cert"; then
    echo "the domains changed"
  else
    left=$(($(not_after "$cert") - now))
    if ((left <= 0)); then
      echo "expired"
    elif ((left < RENEW_BEFORE_DAYS * 86400)); then
      echo "$((left / 86400)) days left"
    else
      return 1
    fi
  fi
}

# Run lego in the background, so a stop signal is handled at once.
obtain() {
  local args=(
    --path "$LEGO_DIR" --server "$ACME_DIRECTORY" --email "$ACME_EMAIL" --accept-tos
    --key-type ec256 --http --http.webroot "$WEBROOT" --user-agent astats-acme
  ) domain
  for domain in "${DOMAINS[@]}"; do args+=(--domains "$domain"); done
  if [ -n "${ACME_CA_FILE:-}" ]; then export LEGO_CA_CERTIFICATES="$ACME_CA_FILE"; fi
  timeout "$LEGO_TIMEOUT_S" lego "${args[@]}" run >"$LEGO_DIR/last-run.log" 2>&1 &
  wait "$!"
}

# Why lego failed, on one line: its last message that is not progress (a fatal one, with the
# lines that continue it), else the end of its output.
lego_error() {
  local status=$1 text
  text=$(awk '
    /^[0-9][0-9][0-9][0-9]\/[0-9][0-9]\/[0-9][0-9] [0-9:]+ / {
      keep = ($3 !~ /^\[(INFO|WARN)\]$/)
      if (keep) { text = ""; sub(/^[^ ]+ [^ ]+ /, "") }
    }
    keep { text = text " " $0 }
    { tail[NR % 3] = $0 }
    END {
      if (text == "") for (i = NR - 2; i <= NR; i++) if (i > 0) text = text " " tail[i % 3]
      print text
    }' "$LEGO_DIR/last-run.log" | tr -s '[:space:]' ' ' | cut -c1-600)
  text=${text# }
  text=${text% }
  if ((status == 124)); then
    echo "lego did not finish within ${LEGO_TIMEOUT_S}s${text:+: $text}"
  else
    echo "${text:-lego exited with status $status}"
  fi
}

# Check what lego obtained and make it current; print its release id, or what is wrong.
# (It runs as an `if` condition, where `set -e` does not hold: every step says its failure.)
install_obtained() {
  local cert="$LEGO_DIR/certificates/${DOMAINS[0]}.crt" key="$LEGO_DIR/certificates/${DOMAINS[0]}.key"
  local id next before
  if ! [ -s "$cert" ] || ! [ -s "$key" ]; then
    echo "lego left no certificate at $cert"
  elif ! openssl x509 -in "$cert" -noout -checkend 0 >/dev/null; then
    echo "lego's certificate has expired"
  elif ! covers_domains "$cert"; then
    echo "lego's certificate does not cover ${DOMAINS[*]}"
  elif [ "$(openssl x509 -in "$cert" -noout -pubkey)" != "$(openssl pkey -in "$key" -pubout)" ]; then
    echo "lego's key does not match its certificate"
  else
    id="$(date -u +%Y%m%dT%H%M%SZ)-$(serial "$cert" | cut -c1-16)"
    next="$RELEASES/.$id.next"
    before=$(readlink "$CURRENT" || true)
    if rm -rf -- "$next" && mkdir -m 0750 "$next" &&
      cp "$cert" "$next/fullchain.pem" && cp "$key" "$next/privkey.pem" &&
      chmod 0640 "$next/fullchain.pem" "$next/privkey.pem" &&
      printf '%s\n' "$ACME_DIRECTORY" >"$next/source" &&
      mv -T "$next" "$RELEASES/$id" && switch_to "$id"; then
      prune_releases "$id" "${before#releases/}"
      echo "$id"
      return 0
    fi
    echo "could not make releases/$id current"
  fi
  return 1
}

# The loop's record; kept across restarts in status.json.
LAST_ATTEMPT="" LAST_SUCCESS="" LAST_ERROR="" NEXT_ATTEMPT="" FAILED=0 FAILED_REQUEST=""

status_value() {
  [ -f "$STATUS" ] || return 0
  sed -n -E "s/^  \"$1\": (.*[^,]),?\$/\\1/p" "$STATUS" | head -n 1
}
status_time() {
  local value
  value=$(status_value "$1")
  [[ $value == \"*\" ]] && epoch "${value//\"/}" || true
}
status_text() {
  local value
  value=$(status_value "$1")
  if [[ $value == \"*\" ]]; then
    value=${value#\"}
    value=${value%\"}
    value=${value//\\\"/\"}
    printf '%s' "${value//\\\\/\\}"
  fi
}

read_record() {
  LAST_ATTEMPT=$(status_time last_attempt)
  LAST_SUCCESS=$(status_time last_success)
  LAST_ERROR=$(status_text last_error)
  NEXT_ATTEMPT=$(status_time next_attempt)
  FAILED=$(status_value attempts_failed)
  [[ $FAILED =~ ^[0-9]+$ ]] || FAILED=0
  FAILED_REQUEST=$(status_text failed_request)
}

# The certificate's fields of the status object (without the braces).
cert_json() {
  local now cert end
  now=$(date +%s)
  cert=$(current_cert)
  printf '  "domains": %s,\n' "$(json_list "${DOMAINS[@]}")"
  if has_current; then
    end=$(not_after "$cert")
    printf '  "issuer": %s,\n' "$(json_str "$(issuer "$cert")")"
    printf '  "serial": %s,\n' "$(json_str "$(serial "$cert")")"
    printf '  "not_after": %s,\n' "$(json_time "$end")"
    printf '  "days_left": %s,\n' "$(((end - now) / 86400))"
    printf '  "covers_domains": %s,\n' "$(json_bool covers_domains "$cert")"
  else
    printf '  "issuer": null,\n  "serial": null,\n  "not_after": null,\n'
    printf '  "days_left": null,\n  "covers_domains": false,\n'
  fi
  printf '  "placeholder": %s,\n' "$(json_bool is_placeholder)"
}

loop_json() {
  printf '  "last_attempt": %s,\n' "$(json_time "$LAST_ATTEMPT")"
  printf '  "last_success": %s,\n' "$(json_time "$LAST_SUCCESS")"
  printf '  "last_error": %s,\n' "$(json_opt "$LAST_ERROR")"
  printf '  "next_attempt": %s,\n' "$(json_time "$NEXT_ATTEMPT")"
  printf '  "attempts_failed": %s,\n' "$FAILED"
  printf '  "failed_request": %s\n' "$(json_opt "$FAILED_REQUEST")"
}

write_status() {
  {
    printf '{\n'
    cert_json
    loop_json
    printf '}\n'
  } >"$CERTS_DIR/.status.json.next"
  mv -f "$CERTS_DIR/.status.json.next" "$STATUS"
}

# One check: obtain if needed; set NEXT_ATTEMPT.
check() {
  local now why status id problem delay i
  now=$(date +%s)
  if ! why=$(renewal_reason "$now"); then
    NEXT_ATTEMPT=$((now + CHECK_INTERVAL_S))
    write_status
    return
  fi
  LAST_ATTEMPT=$now
  if obtain; then status=0; else status=$?; fi
  if ((status == 0)) && id=$(install_obtained); then
    LAST_SUCCESS=$(date +%s) LAST_ERROR="" FAILED=0 FAILED_REQUEST=""
    NEXT_ATTEMPT=$((LAST_SUCCESS + CHECK_INTERVAL_S))
    write_status
    say "certificate for ${DOMAINS[*]} obtained ($why): issuer $(issuer "$(current_cert)"), valid until $(iso "$(not_after "$(current_cert)")"), now current (releases/$id)"
    return
  fi
  if ((status == 0)); then problem=$id; else problem=$(lego_error "$status"); fi
  FAILED=$((FAILED + 1)) FAILED_REQUEST=$REQUEST LAST_ERROR=$problem
  delay=$RETRY_MIN_S
  for ((i = 1; i < FAILED && delay < RETRY_MAX_S; i++)); do delay=$((delay * 2)); done
  ((delay < RETRY_MAX_S)) || delay=$RETRY_MAX_S
  NEXT_ATTEMPT=$(($(date +%s) + delay))
  write_status
  say "certificate for ${DOMAINS[*]} not obtained ($why; failed attempt $FAILED, next in ${delay}s at $(iso "$NEXT_ATTEMPT")): $problem"
}

# Sleep in the background, so a stop signal is handled at once.
sleep_until() {
  local left=$(($1 - $(date +%s)))
  if ((left > 0)); then
    sleep "$left" &
    wait "$!"
  fi
}

run() {
  read_loop_settings
  trap 'exit 143' TERM
  trap 'exit 130' INT
  placeholder >/dev/null
  read_record
  # A backoff holds for the request that failed; another directory or other domains try at
  # once, and so does a restart after a success (nothing is obtained unless it is due).
  if ((FAILED == 0)) || [ "$FAILED_REQUEST" != "$REQUEST" ]; then
    FAILED=0 FAILED_REQUEST="" NEXT_ATTEMPT=""
  fi
  say "checking ${DOMAINS[*]} with $ACME_DIRECTORY every ${CHECK_INTERVAL_S}s (renewing under $RENEW_BEFORE_DAYS days left)"
  while true; do
    if [ -n "$NEXT_ATTEMPT" ]; then sleep_until "$NEXT_ATTEMPT"; fi
    check
  done
}

health() {
  read_settings
  local cert
  cert=$(current_cert)
  has_current || fail "no certificate is current"
  ! is_placeholder || fail "the placeholder is current: no certificate obtained yet"
  openssl x509 -in "$cert" -noout -checkend 0 >/dev/null || fail "the current certificate has expired"
  covers_domains "$cert" || fail "the current certificate does not cover ${DOMAINS[*]}"
  [ -n "${ACME_SERVED_ADDRESS:-}" ] || fail "ACME_SERVED_ADDRESS is not set"
  served_matches || fail "$ACME_SERVED_ADDRESS does not serve the current certificate (yet)"
  say "healthy: $ACME_SERVED_ADDRESS serves the current certificate, valid until $(iso "$(not_after "$cert")")"
}

status() {
  read_settings
  read_record
  printf '{\n'
  cert_json
  printf '  "served_matches": %s,\n' "$(json_bool serving_current)"
  loop_json
  printf '}\n'
}

case "${1:-}" in
  run | placeholder | health | status) "$1" ;;
  *) fail "usage: astats-acme run|placeholder|health|status" 64 ;;
esac
