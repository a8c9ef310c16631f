#!/bin/sh
# PostgreSQL's archive_command: push one WAL file to the repositories through pgBackRest
# (asynchronously, with the spool its environment names). A repository without the stanza yet,
# as on a new data volume or a stack that ran before archiving was on, answers 103: the stanza
# is created then (it is idempotent) and the push tried again, so WAL never waits in pg_wal for
# a first backup. Any other failure is PostgreSQL's to retry.
set -u
pgbackrest archive-push "$1"
status=$?
[ "$status" -eq 103 ] || exit "$status"
pgbackrest stanza-create || exit $?
exec pgbackrest archive-push "$1"
