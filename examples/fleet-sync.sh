#!/bin/sh
# Copy one host's audit store into the central store, safely, at any time (cron, hourly):
#   fleet-sync.sh LOGDIR DEST
# LOGDIR: this host's store (AUDIT_LOG_DIR). DEST: an rsync destination that is the central
# store's directory, e.g. /mnt/audit-central/ or loghost:/srv/audit/ (trailing slash).
# Seal first (see docs/fleet.md), then run this. What it copies, in this order:
#   1. archives (date=*/<writer>.jsonl.gz): never written again once they have their name
#      (rotate writes a hidden temp file and renames it);
#   2. plain files (date=*/<writer>.jsonl), each copied under the shared lock that
#      `audit record` waits for, so no copy ends in the middle of a line;
#   3. the manifests last (_manifests/<writer>/), so every checkpoint they hold is already
#      covered by the files copied before them.
# It never deletes anything at DEST (no --delete): the central copy keeps the evidence even if
# this host is later compromised. Hidden files (.lock, temp files), _index/, _accounts/,
# _catalog.json and the rotation leftovers are not copied.
set -eu
log=${1:?usage: fleet-sync.sh LOGDIR DEST}
dest=${2:?usage: fleet-sync.sh LOGDIR DEST}
RSYNC=${RSYNC:-rsync}
cd "$log"
snap=$(mktemp -d)
trap 'rm -rf "$snap"' EXIT INT TERM

# 1. archives
"$RSYNC" -a --exclude='.*' --include='date=*/' --include='date=*/*.jsonl.gz' --exclude='*' \
    ./ "$dest"

# 2. plain files: a consistent snapshot of each (a file rotated meanwhile is gone: its archive
#    goes out with the next run)
for file in date=*/*.jsonl; do
    [ -f "$file" ] || continue
    mkdir -p "$snap/${file%/*}"
    flock -s "$file" cp -p "$file" "$snap/$file" 2>/dev/null || rm -f "$snap/$file"
done
"$RSYNC" -a "$snap"/ "$dest"

# 3. manifests (a legacy flat chain, _manifests/*.json from before per-writer chains, stays
#    here: every host has one of its own, and they would overwrite each other at DEST)
if [ -d _manifests ]; then
    "$RSYNC" -a --exclude='.*' --exclude='/_manifests/*.json' _manifests "$dest"
fi
