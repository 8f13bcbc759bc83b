#!/usr/bin/env bash
# Checks the public API and writes its reference (dist/docs/api/) from the built declarations.
# api/*.api.md are the committed contract of each entry point: locally a change rewrites them
# (commit the new report with the change); in CI a report that differs from the build fails,
# so the public surface never changes by accident. Anything exported must carry TSDoc.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=(--local)
[[ "${CI:-}" == true ]] && mode=()
for entry in kms-envelope providers; do
  npx api-extractor run "${mode[@]}" --config "api/$entry.json"
  if grep -n "(undocumented)\|Warning:" "api/$entry.api.md"; then
    echo "api/$entry.api.md: document or export what the lines above name" >&2
    exit 1
  fi
  npx api-documenter markdown --input-folder "dist/api-model/$entry" \
    --output-folder "dist/docs/api/$entry" >/dev/null
done
