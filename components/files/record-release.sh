#!/bin/sh
# Record a release: the rollout that just finished, as one labelled image per app service,
# `astats-<stack>-<service>:release-<UTC time>` (FROM the image it runs, plus labels; no layer
# of its own). The labels say what the release is: its backend and frontend image ids and
# references, the Alembic head it migrated to and its pre-migration backup. `astats releases`
# reads them (with `pulumi stack history`), `astats rollback` runs them again, and they keep the
# images on the host: the newest KEEP releases stay, older ones are removed here.
# Usage: record-release.sh STACK KEEP (the rest in the environment: see components/release_record.py)
set -eu
stack="$1"
keep="$2"
stamp=$(date -u +%Y%m%dT%H%M%SZ)

db=$(docker ps -q --filter "label=astats.stack=$stack" --filter label=astats.service=db | head -n 1)
head=""
if [ -n "$db" ]; then
  head=$(docker exec -u postgres "$db" psql -X -At -h /var/run/postgresql -U "$DB_USER" \
    -d "$DB_NAME" -c 'SELECT version_num FROM alembic_version' 2>/dev/null | head -n 1) || head=""
fi

mark() {
  service="$1" image="$2" reference="$3"
  printf 'FROM %s\n' "$image" | docker build --quiet \
    --label "astats.stack=$stack" \
    --label "astats.release=$stamp" \
    --label "astats.release.service=$service" \
    --label "astats.release.image=$image" \
    --label "astats.release.reference=$reference" \
    --label "astats.release.backend-image=$BACKEND_IMAGE" \
    --label "astats.release.backend-reference=$BACKEND_REFERENCE" \
    --label "astats.release.frontend-image=$FRONTEND_IMAGE" \
    --label "astats.release.frontend-reference=$FRONTEND_REFERENCE" \
    --label "astats.release.alembic-head=$head" \
    --label "astats.release.backup=$BACKUP" \
    --tag "astats-$stack-$service:release-$stamp" - >/dev/null
}
mark backend "$BACKEND_IMAGE" "$BACKEND_REFERENCE"
mark frontend "$FRONTEND_IMAGE" "$FRONTEND_REFERENCE"

# Older releases go, newest first kept; an image a container still runs stays (rmi refuses).
for service in backend frontend; do
  docker images --filter "label=astats.stack=$stack" --filter "label=astats.release.service=$service" \
    --format '{{.Repository}}:{{.Tag}}' | grep ":release-" | sort -r | tail -n "+$((keep + 1))" |
    while read -r tag; do docker rmi "$tag" >/dev/null 2>&1 || true; done
done
printf '%s' "$stamp"
