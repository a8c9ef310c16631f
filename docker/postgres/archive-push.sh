#!/bin/sh
# PostgreSQL's archive_command: push one WAL file to the repositories through pgBackRest
# (asynchronously, with the spool its environment names). A repository without the stanza yet,
# as on a new data volume or a stack that ran before archiving was on, answers 103: the stanza
# is created then (it is idempotent) and the push tried again, so WAL never waits in pg_wal for
# a first backup. Any other failure is PostgreSQL's to retry, and its words go to the log.
set -u
said=$(pgbackrest archive-push "$1" 2>&1)
status=$?
if [ "$status" -ne 103 ]; then
  [ -z "$said" ] || printf '%s\n' "$said" >&2
  exit "$status"
fi
pgbackrest stanza-create || exit $?
exec pgbackrest archive-push "$1"
