//! Where an installed app finds the files its installer put beside it (the starter disease
//! library). The installers copy `bundle.resources` of `tauri.conf.json` into a resource folder
//! whose place depends on the package: `/usr/lib/DoctorGLM` for the .deb (the binary is
//! `/usr/bin/doctorglm`), `$APPDIR/usr/lib/DoctorGLM` inside the AppImage, the install folder
//! itself for the MSI, `Contents/Resources` in a macOS bundle. The CLI has no Tauri app handle,
//! so the window and the CLI both use this lookup rather than Tauri's `resource_dir()`.
use std::path::{Path, PathBuf};

/// The product name: Linux packages put resources in `lib/<product name>` (tauri.conf.json's
/// `productName`; a test checks they agree).
pub const PRODUCT_NAME: &str = "DoctorGLM";

/// The starter library's path inside the resource folder (the target of its
/// `bundle.resources` entry; a test checks they agree).
pub const STARTER_LIBRARY: &str = "knowledge/library";

/// Resource folders an installer may have put beside the executable `exe`, in the order they
/// are tried: Linux packages, macOS bundles, then the executable's own folder (MSI).
pub fn resource_dirs(exe: &Path) -> Vec<PathBuf> {
    let Some(dir) = exe.parent() else { return Vec::new() };
    vec![dir.join("..").join("lib").join(PRODUCT_NAME), dir.join("..").join("Resources"), dir.to_path_buf()]
}

/// The first existing folder `relative` inside one of `exe`'s resource folders.
pub fn find_resource_dir(exe: &Path, relative: &str) -> Option<PathBuf> {
    resource_dirs(exe).into_iter().map(|d| d.join(relative)).find(|p| p.is_dir()).map(|p| tidy(&p))
}

/// `p` without `..` steps where the folder exists (nicer in messages), else unchanged.
fn tidy(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf() -> serde_json::Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tauri.conf.json");
        let text = std::fs::read_to_string(&path).expect("tauri.conf.json is readable");
        serde_json::from_str(&text).expect("tauri.conf.json is JSON")
    }

    #[test]
    fn the_bundle_ships_the_starter_library_where_the_lookup_finds_it() {
        let conf = conf();
        assert_eq!(conf["productName"], PRODUCT_NAME, "Linux packages put resources in lib/<productName>");
        let resources = conf["bundle"]["resources"].as_object().expect("bundle.resources is a source → target map");
        let (source, target) = resources
            .iter()
            .find(|(_, target)| target.as_str().map(|t| t.trim_end_matches('/')) == Some(STARTER_LIBRARY))
            .expect("bundle.resources installs the starter library as knowledge/library");
        // Paths in bundle.resources are relative to tauri.conf.json's folder.
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(
            tidy(&manifest.join(source)),
            tidy(&manifest.join("..").join("knowledge").join("library")),
            "the folder bundled as {target} is the repository's starter library"
        );
        let library = doctorglm_knowledge::Library::load(manifest.join(source)).expect("the bundled starter library loads");
        assert!(library.len() > 100, "the starter library has its documents ({} found)", library.len());
    }

    #[test]
    fn finds_the_library_in_each_install_layout() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        // (where the installer puts the executable, where it puts the resources)
        let layouts = [
            ("deb/usr/bin/doctorglm", "deb/usr/lib/DoctorGLM"),
            ("appimage/usr/bin/doctorglm", "appimage/usr/lib/DoctorGLM"),
            ("msi/DoctorGLM/doctorglm.exe", "msi/DoctorGLM"),
            ("mac/DoctorGLM.app/Contents/MacOS/doctorglm", "mac/DoctorGLM.app/Contents/Resources"),
        ];
        for (exe, res) in layouts {
            let exe = r.join(exe);
            std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
            assert_eq!(find_resource_dir(&exe, STARTER_LIBRARY), None, "{}: nothing installed yet", exe.display());
            let lib = r.join(res).join(STARTER_LIBRARY);
            std::fs::create_dir_all(&lib).unwrap();
            assert_eq!(find_resource_dir(&exe, STARTER_LIBRARY), Some(tidy(&lib)), "{}", exe.display());
        }
    }
}
