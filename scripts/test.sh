#!/usr/bin/env bash
# Runs every test of DoctorGLM Desktop: Rust unit, golden and integration tests,
# the UI's unit tests and the end-to-end tests. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

export DOCTORGLM_FIXTURES="${DOCTORGLM_FIXTURES:-$(cd .. && pwd)/shared/fixtures}"

cargo test --workspace --no-fail-fast

if [ -f ui/package.json ]; then
  (cd ui && npm run check && npm test)
fi
