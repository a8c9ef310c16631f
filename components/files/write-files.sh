#!/bin/sh
# Write the files a service reads at start into its files volume: write-files.sh DIR < files
#
# A container with a read-only root file system cannot be given files by `docker cp` (the
# provider's `uploads`), so its secrets and configs live in a volume of their own, mounted
# read-only. Each stdin line is `NAME BASE64`: a file's name and its content in base64, so
# secrets travel on stdin, never in an argument list. A file is written beside and renamed into
# place; a file no line names any more goes. Prints a new revision, which the container carries
# as a label: new contents replace the container.
set -eu
dir="${1:?usage: write-files.sh DIR < files}"
# Readable by the service whatever its user; the volume is mounted only where it belongs.
umask 0222
kept=" "
while read -r name content || [ -n "$name" ]; do
  case "$name" in
    '' | .* | */* | *[!A-Za-z0-9._-]*) echo "write-files: bad file name '$name'" >&2; exit 64 ;;
  esac
  rm -f "$dir/.$name.next"
  printf '%s' "$content" | base64 -d >"$dir/.$name.next"
  mv -f "$dir/.$name.next" "$dir/$name"
  kept="$kept$name "
done
for file in "$dir"/*; do
  [ -e "$file" ] || continue
  case "$kept" in *" ${file##*/} "*) ;; *) rm -f "$file" ;; esac
done
printf '%s' "$(cat /proc/sys/kernel/random/uuid)"
