//! Build script: Tauri's code generation needs the front end's output folder (`ui/dist`)
//! at compile time. A clean clone has not built the UI yet, so a placeholder page is written
//! there when it is missing; `npm run build` in `ui/` replaces it with the real front end.
fn main() {
    #[cfg(feature = "desktop")]
    desktop();
}

#[cfg(feature = "desktop")]
fn desktop() {
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/dist");
    if !dist.join("index.html").exists() {
        if let Err(e) = std::fs::create_dir_all(&dist).and_then(|_| {
            std::fs::write(
                dist.join("index.html"),
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>DoctorGLM</title></head>\
                 <body><p>The interface was not built. Run <code>npm ci &amp;&amp; npm run build</code> \
                 in <code>ui/</code>, or start the app with <code>./scripts/run.sh</code>.</p></body></html>",
            )
        }) {
            println!("cargo:warning=could not write a placeholder ui/dist: {e}");
        }
    }
    println!("cargo:rerun-if-changed=../ui/dist");
    tauri_build::build()
}
