#!/usr/bin/env bash
# Copies the R package's sources (the checkout's files git tracks or would track: not .venv, .tools, .stamps
# or other ignored build output) into DIR, for R CMD build, which otherwise copies the whole checkout, tens
# of thousands of virtualenv and npm files included, before applying .Rbuildignore.
#   tools/stage_package.sh DIR
set -euo pipefail
dest="$1"
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$dest"
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # Tracked files deleted in the working tree are left out, as R CMD build would.
  (cd "$root" && git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf -) | tar -xf - -C "$dest"
else
  cp -R "$root"/. "$dest"
fi
