#!/usr/bin/env bash
# Copy the files git lists into <dir>/ansible_collections/orthanc_ops/backup (ansible-test
# refuses a symlinked tree) and print that folder.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
root=${1:-${TMPDIR:-/tmp}/orthanc-ops-tree}
tree="$root/ansible_collections/orthanc_ops/backup"
rm -rf "$tree"
mkdir -p "$tree"
(cd "$here" && git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] && printf '%s\0' "$f"; done | xargs -0 cp --parents -t "$tree")
(cd "$tree" && git init -q && git add -A)   # ansible-test sanity only looks at files git knows
echo "$tree"
