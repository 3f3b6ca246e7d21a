#!/usr/bin/env bash
# Runs every test of DoctorGLM Desktop: Rust unit, golden and integration tests, the engine's
# unit tests on aarch64 under qemu, the UI's unit tests and the end-to-end tests. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

export DOCTORGLM_FIXTURES="${DOCTORGLM_FIXTURES:-$(cd .. && pwd)/shared/fixtures}"

# The interface first: the app embeds ui/dist when it is compiled (a placeholder otherwise).
if [ -f ui/package.json ]; then (cd ui && npm run build); fi

cargo test --workspace --no-fail-fast

# The engine's unit tests again on 64-bit ARM under qemu (the NEON kernels).
bash scripts/test-aarch64.sh

if [ -f ui/package.json ]; then
  (cd ui && npm run check && npm test)
fi

# End-to-end: the real window under Xvfb through tauri-driver (builds the UI and the debug app).
bash tests/e2e/run.sh
