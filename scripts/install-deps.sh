#!/usr/bin/env bash
# Installs what DoctorGLM Desktop needs to build, test and run on Debian/Ubuntu.
# Idempotent: safe to run again. Needs root (or sudo) for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# System packages: C toolchain, OpenSSL for SQLCipher, libdbus for the keyring (Secret Service), WebKitGTK for the Tauri window,
# Xvfb and WebKitWebDriver for the end-to-end tests.
APT_PACKAGES=(
  build-essential pkg-config curl file
  libssl-dev
  libwebkit2gtk-4.1-dev libsoup-3.0-dev libjavascriptcoregtk-4.1-dev librsvg2-dev
  xvfb xauth webkit2gtk-driver
  libdbus-1-dev
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing system packages: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust (rustup) first" >&2
  exit 1
fi

# tauri-driver (the WebDriver server the end-to-end tests talk to), pinned; skipped when this
# version is installed already.
TAURI_DRIVER_VERSION=2.1.0
export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo install --list 2>/dev/null | grep -qx "tauri-driver v$TAURI_DRIVER_VERSION:"; then
  echo "installing tauri-driver $TAURI_DRIVER_VERSION"
  cargo install tauri-driver --locked --version "=$TAURI_DRIVER_VERSION"
fi

# Front-end modules; skipped when node_modules was installed after the last change of the
# lock file and package.json (npm writes node_modules/.package-lock.json on every install).
if [ -f ui/package.json ]; then
  (cd ui
   stamp=node_modules/.package-lock.json
   if [ -f "$stamp" ] && [ "$stamp" -nt package-lock.json ] && [ "$stamp" -nt package.json ]; then
     echo "npm modules up to date"
   elif [ -f package-lock.json ]; then npm ci --no-audit --no-fund
   else npm install --no-audit --no-fund; fi)
fi
