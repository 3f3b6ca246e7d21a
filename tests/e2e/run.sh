#!/usr/bin/env bash
# Runs the end-to-end tests: the app's real window under Xvfb, driven by tauri-driver and
# WebKitWebDriver. Needs the debug app built (scripts/test.sh builds it) and ../shared/fixtures.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.cargo/bin:$PATH"
command -v tauri-driver >/dev/null || cargo install tauri-driver --locked --version '^2'
for tool in tauri-driver WebKitWebDriver xvfb-run node; do
  command -v "$tool" >/dev/null || { echo "e2e: $tool is missing: run scripts/install-deps.sh" >&2; exit 1; }
done
app="${DOCTORGLM_APP:-target/debug/doctorglm}"
if [ -z "${DOCTORGLM_APP:-}" ]; then
  (cd ui && npm run build)
  cargo build -p doctorglm --features desktop
fi
export DOCTORGLM_APP="$(cd "$(dirname "$app")" && pwd)/$(basename "$app")"
export DOCTORGLM_FIXTURES="${DOCTORGLM_FIXTURES:-$(cd .. && pwd)/shared/fixtures}"
mkdir -p tests/artifacts
# A software-rendered GL avoids WebKit's GPU process needs under Xvfb.
export LIBGL_ALWAYS_SOFTWARE=1 WEBKIT_DISABLE_COMPOSITING_MODE=1 WEBKIT_DISABLE_DMABUF_RENDERER=1
exec xvfb-run -a -s "-screen 0 1280x900x24" node --test --test-concurrency=1 tests/e2e/app.test.mjs
