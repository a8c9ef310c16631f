#!/bin/sh
# Add one frontend release's static files to the shared assets volume, then drop the files no
# kept release needs: publish-assets.sh STATIC_DIR ASSETS_DIR RELEASE KEEP
#
# STATIC_DIR is the image's Next.js `.next/static`; its files land in ASSETS_DIR/_next/static/,
# where nginx serves them. Next.js names them by content hash, so releases share one tree. Each
# release's file list goes in ASSETS_DIR/.releases/<seq>-RELEASE; the newest KEEP lists are
# kept, and a file no kept list names is removed, so a page loaded before the last KEEP-1
# rollouts still finds its chunks.
set -eu
static="${1:?usage: publish-assets.sh STATIC_DIR ASSETS_DIR RELEASE KEEP}"
assets="${2:?assets directory}"
release="${3:?release name}"
keep="${4:?releases to keep}"
case "$keep" in '' | *[!0-9]* | 0) echo "publish-assets: KEEP must be 1 or more, not '$keep'" >&2; exit 64 ;; esac
case "$release" in *[!A-Za-z0-9._-]* | '') echo "publish-assets: bad release name '$release'" >&2; exit 64 ;; esac
[ -d "$static" ] || { echo "publish-assets: no $static in this image (frontend.staticDir)" >&2; exit 66; }

tree="$assets/_next/static"
lists="$assets/.releases"
mkdir -p "$tree" "$lists"

# Files first, the list after: a list never names a file that is not there yet.
(cd "$static" && find . -type f) | sed 's|^\./||' | sort >"$lists/.incoming"
cp -R "$static/." "$tree/"
chmod -R a+rX "$assets"

latest=$(ls "$lists" | grep -E '^[0-9]{6}-' | sort | tail -n 1 || true)
if [ -n "$latest" ] && [ "${latest#*-}" = "$release" ]; then
  mv -f "$lists/.incoming" "$lists/$latest"
else
  last=$(echo "${latest%%-*}" | sed 's/^0*//')
  seq=$(printf '%06d' $((${last:-0} + 1)))
  mv -f "$lists/.incoming" "$lists/$seq-$release"
fi

ls "$lists" | grep -E '^[0-9]{6}-' | sort -r | tail -n +$((keep + 1)) | while read -r old; do
  rm -f "$lists/$old"
done
cat "$lists"/[0-9]*-* | sort -u >"$lists/.kept"
(cd "$tree" && find . -type f) | sed 's|^\./||' | grep -vxFf "$lists/.kept" | while read -r gone; do
  rm -f "$tree/$gone"
done
rm -f "$lists/.kept"
# Folders left empty go too (rmdir refuses the others).
find "$tree" -depth -type d -exec rmdir {} \; 2>/dev/null || true
echo "publish-assets: $release published; $(ls "$lists" | grep -cE '^[0-9]{6}-') releases kept"
