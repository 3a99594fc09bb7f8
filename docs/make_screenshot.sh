#!/usr/bin/env bash
# Render the access-review report of sample_logs/ in headless Chromium and save it as
# docs/report-screenshot.png (the picture in the README). Also a check that the report is
# self-contained: Chromium runs with networking disabled and the page forbids any fetch.
#
#   bash docs/make_screenshot.sh            # needs `audit` on PATH and chromium
#   AUDIT=/tmp/v/bin/audit CHROMIUM=/usr/bin/chromium bash docs/make_screenshot.sh
#
# Install Chromium on Debian/Ubuntu with: apt-get update && apt-get install -y chromium
set -euo pipefail
cd "$(dirname "$0")/.."
AUDIT=${AUDIT:-audit}
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}
if [ -z "$CHROMIUM" ]; then
  echo "chromium not found: apt-get install -y chromium, or set CHROMIUM=/path/to/chrome" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A fixed "generated" time keeps the picture identical from run to run.
SOURCE_DATE_EPOCH=1794441600 "$AUDIT" -d sample_logs report \
  --since 2026-11-02 --until 2026-11-11 -o "$work/report.html"
"$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-background-networking \
  --no-first-run --hide-scrollbars --user-data-dir="$work/profile" \
  --window-size=1200,1600 --screenshot="$PWD/docs/report-screenshot.png" \
  "file://$work/report.html" 2>/dev/null
echo "wrote docs/report-screenshot.png"
