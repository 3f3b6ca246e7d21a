#!/usr/bin/env bash
# Installs what DoctorGLM Desktop needs (system packages, npm modules), builds the interface
# and the app, and starts it. Arguments are passed to `doctorglm` (none opens the window), e.g.
#   ./scripts/run.sh                                   # the window
#   ./scripts/run.sh models import ../shared/fixtures/models/chatglm3-tiny
#   xvfb-run -a ./scripts/run.sh                       # headless, to try it without a desktop
# Set DOCTORGLM_RELEASE=1 for an optimized build (slower to build, faster to start).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
(cd ui && npm run build)
profile=(); dir=debug
if [ "${DOCTORGLM_RELEASE:-0}" = "1" ]; then profile=(--release); dir=release; fi
cargo build -p doctorglm "${profile[@]}"
target="${CARGO_TARGET_DIR:-target}"
bin="$target/$dir/doctorglm"
if [ $# -eq 0 ] && [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
  echo "no display found: run this on a desktop session, or under xvfb-run to try it headless" >&2
  exit 1
fi
exec "$bin" "$@"
