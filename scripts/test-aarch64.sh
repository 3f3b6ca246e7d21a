#!/usr/bin/env bash
# Builds the engine's unit tests for 64-bit ARM (aarch64) and runs them under qemu-user, so the
# NEON kernels are checked against the scalar reference on every test run. qemu checks results,
# not speed: no figure of this run says how fast an ARM machine decodes.
#
# rustup's toolchain here has no aarch64 standard library, so this uses Debian's own compiler
# (rustc-web, from bookworm-security) with its multiarch aarch64 standard library, gcc's
# aarch64 cross linker, and the arm64 C library that qemu runs the tests against.
# Needs root (or sudo) for dpkg and apt-get; called by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

PACKAGES=(rustc-web cargo-web libstd-rust-web-dev:arm64 libc6:arm64 gcc-aarch64-linux-gnu qemu-user)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

missing=()
for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then $SUDO dpkg --add-architecture arm64; fi
  $SUDO apt-get update -q
  if ! apt-cache show rustc-web >/dev/null 2>&1; then
    # Ubuntu and other releases name their versioned compilers differently.
    echo "aarch64 tests SKIPPED: this distribution has no rustc-web package (Debian 12 has it)" >&2
    exit 0
  fi
  echo "installing the aarch64 cross toolchain: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi

# The compiler and its aarch64 standard library come from the same Debian package version.
export RUSTC=/usr/bin/rustc
export CARGO_TARGET_DIR=target/aarch64
# No debug information: it only slows the build (and the link) of a binary that runs once.
export CARGO_PROFILE_DEV_DEBUG=0
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
# No `-L` prefix: the binaries' loader and C library are then the arm64 multiarch packages'
# (/lib/aarch64-linux-gnu). The cross toolchain's own copies under /usr/aarch64-linux-gnu are
# another build, and a loader of one with the C library of the other hangs in the first
# thread's creation.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64

echo "aarch64: $($RUSTC --version), $(qemu-aarch64 --version | head -n 1)"
/usr/bin/cargo test -p doctorglm-models --target aarch64-unknown-linux-gnu --lib
