#!/usr/bin/env bash
# Runs the end-to-end tests (tests/e2e/*.test.mjs): the app's real window under Xvfb, driven
# by tauri-driver and WebKitWebDriver. Builds the interface and the debug app first unless
# $DOCTORGLM_APP names a built binary. Needs ../shared/fixtures (or $DOCTORGLM_FIXTURES).
# Screenshots go to tests/artifacts/ (git-ignored). Arguments: test files to run (default all).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.cargo/bin:$PATH"
for tool in tauri-driver WebKitWebDriver xvfb-run node; do
  command -v "$tool" >/dev/null || { echo "e2e: $tool is missing: run scripts/install-deps.sh" >&2; exit 1; }
done
if [ -z "${DOCTORGLM_APP:-}" ]; then
  (cd ui && npm run build)
  cargo build -p doctorglm
  DOCTORGLM_APP="${CARGO_TARGET_DIR:-target}/debug/doctorglm"
fi
export DOCTORGLM_APP="$(cd "$(dirname "$DOCTORGLM_APP")" && pwd)/$(basename "$DOCTORGLM_APP")"
export DOCTORGLM_FIXTURES="${DOCTORGLM_FIXTURES:-$(cd .. && pwd)/shared/fixtures}"
export DOCTORGLM_ARTIFACTS="${DOCTORGLM_ARTIFACTS:-$PWD/tests/artifacts}"
mkdir -p "$DOCTORGLM_ARTIFACTS"
# Software GL: Xvfb has no GPU. (WEBKIT_DISABLE_DMABUF_RENDERER=1 would make WebDriver screenshots hang.)
export LIBGL_ALWAYS_SOFTWARE=1
files=("$@")
if [ ${#files[@]} -eq 0 ]; then files=(tests/e2e/*.test.mjs); fi
exec xvfb-run -a -s "-screen 0 1280x900x24" \
  node --test --test-concurrency=1 --test-timeout=600000 "${files[@]}"
