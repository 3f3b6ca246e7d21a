#!/usr/bin/env bash
# Builds the release app and measures start-up to an interactive window and idle memory under
# Xvfb (see scripts/measure-startup.mjs). Arguments go to the script, e.g. --runs 20.
# Set DOCTORGLM_APP to measure an already built binary; --cold drops its files from the page cache
# before each run.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${DOCTORGLM_APP:-}" ]; then
  (cd ui && npm run build)
  cargo build --release -p doctorglm
  DOCTORGLM_APP="${CARGO_TARGET_DIR:-target}/release/doctorglm"
fi
# Software GL: Xvfb has no GPU. (WEBKIT_DISABLE_DMABUF_RENDERER=1 would make WebDriver screenshots hang.)
export LIBGL_ALWAYS_SOFTWARE=1
run=(node scripts/measure-startup.mjs --app "$DOCTORGLM_APP" "$@")
if [ -n "${DISPLAY:-}" ]; then exec "${run[@]}"; fi
exec xvfb-run -a -s "-screen 0 1280x900x24" "${run[@]}"
