#!/usr/bin/env bash
# Builds the Linux installers of DoctorGLM Desktop from a release build: a .deb (Debian 12,
# Ubuntu 22.04 and later) and an AppImage. Prints where they are.
#
#   ./scripts/package.sh                 # both
#   ./scripts/package.sh deb             # only the .deb (or: appimage)
#
# Installs what it needs first (scripts/install-deps.sh, plus the bundling tools below), builds
# the interface and `cargo build --release -p doctorglm`, then packages that binary with the
# Tauri CLI pinned in ui/package.json (`tauri bundle`, which does not rebuild). The MSI is
# built on Windows: see README "Installers".
#
# The AppImage step runs linuxdeploy with its GTK plugin, which Tauri's bundler downloads into
# ~/.cache/tauri on first use; a machine without access to their project downloads cannot build
# the AppImage (copy that folder from a machine that built one). The .deb needs nothing extra.
set -euo pipefail
cd "$(dirname "$0")/.."

bundles=("$@")
if [ ${#bundles[@]} -eq 0 ]; then bundles=(deb appimage); fi
for b in "${bundles[@]}"; do
  case "$b" in
    deb | appimage) ;;
    *) echo "unknown package kind '$b': choose deb or appimage" >&2; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

bash scripts/install-deps.sh

# Bundling tools: `file` and desktop-file-utils for linuxdeploy (and to check the desktop entry),
# squashfs-tools to look inside an AppImage. FUSE is not needed: the AppImage tools run with
# APPIMAGE_EXTRACT_AND_RUN=1 (containers and CI have no /dev/fuse).
BUNDLE_PACKAGES=(file desktop-file-utils squashfs-tools)
missing=()
for p in "${BUNDLE_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing bundling tools: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi
export APPIMAGE_EXTRACT_AND_RUN=1

(cd ui && npm run build)
cargo build --release -p doctorglm

target="${CARGO_TARGET_DIR:-target}"
out="$target/release/bundle"
tauri="$PWD/ui/node_modules/.bin/tauri"

built=()
failed=()
for b in "${bundles[@]}"; do
  echo "== packaging: $b"
  stamp="$(mktemp)"  # packages newer than this are this run's (the binary's own mtime changes while bundling)
  if (cd src-tauri && "$tauri" bundle --bundles "$b" --ci); then
    case "$b" in
      deb) dir="$out/deb"; pattern="*.deb" ;;
      appimage) dir="$out/appimage"; pattern="*.AppImage" ;;
    esac
    while IFS= read -r f; do built+=("$f"); done < <(find "$dir" -maxdepth 1 -name "$pattern" -newer "$stamp")
  else
    failed+=("$b")
    if [ "$b" = appimage ]; then
      echo "the AppImage was not built: its tools (linuxdeploy and plugins in ~/.cache/tauri) could not be downloaded or run; see the lines above" >&2
    fi
  fi
  rm -f "$stamp"
done

echo
if [ ${#built[@]} -gt 0 ]; then
  echo "packages:"
  for f in "${built[@]}"; do echo "  $f ($(du -h "$f" | cut -f1))"; done
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "not built: ${failed[*]}" >&2
  exit 1
fi
