//! Case bookkeeping for the golden harness.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

/// Where the fixtures are: `$DOCTORGLM_FIXTURES`, else `<repo>/../shared/fixtures`.
pub fn fixture_root() -> PathBuf {
    match std::env::var_os("DOCTORGLM_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
    }
}

/// Counts passed and failed cases and prints one line for each.
#[derive(Default)]
pub struct Report {
    passed: usize,
    failed: usize,
}

impl Report {
    /// Runs one case; an `Err` or a panic is a failure.
    pub fn check(&mut self, name: &str, case: impl FnOnce() -> Result<(), String>) {
        match catch_unwind(AssertUnwindSafe(case)) {
            Ok(Ok(())) => {
                self.passed += 1;
                println!("ok     {name}");
            }
            Ok(Err(why)) => {
                self.failed += 1;
                println!("FAILED {name}: {why}");
            }
            Err(panic) => {
                self.failed += 1;
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                println!("FAILED {name}: panicked: {why}");
            }
        }
    }

    /// Prints `N passed, M failed` and exits non-zero on any failure or when nothing ran.
    pub fn finish(self) -> ! {
        println!("{} passed, {} failed", self.passed, self.failed);
        let code = if self.failed > 0 || self.passed == 0 { 1 } else { 0 };
        std::process::exit(code)
    }
}
