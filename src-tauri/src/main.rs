// Windows release builds are GUI programs, so starting the app opens no console window. Such a
// program has no console of its own: when given a subcommand it attaches to the console of the
// terminal that started it (`attach_parent_console`), so the CLI prints there. See README
// "Windows installer" for what that means in cmd and PowerShell.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]
use clap::Parser;
use doctorglm::cli::{self, Cli};

/// Attaches to the console of the process that started this one (a terminal), if it has one;
/// standard output and error then reach it. Without a parent console (started from Explorer
/// or the Start menu) nothing happens.
#[cfg(all(windows, not(debug_assertions)))]
fn attach_parent_console() {
    #[link(name = "kernel32")]
    extern "system" {
        fn AttachConsole(process_id: u32) -> i32;
    }
    const ATTACH_PARENT_PROCESS: u32 = u32::MAX;
    // SAFETY: a Win32 call with no pointer arguments; its failure (no parent console) is harmless.
    unsafe {
        AttachConsole(ATTACH_PARENT_PROCESS);
    }
}

/// Lets a subcommand whose reader goes away (`doctorglm knowledge search 高血压 | head`) end
/// quietly, as command-line tools do, instead of panicking in `println!`. Rust ignores SIGPIPE
/// by default; the window keeps that (its IPC sockets must not kill it), only subcommands reset it.
#[cfg(unix)]
fn default_sigpipe() {
    // SAFETY: resets one signal's disposition at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Makes glibc return freed buffers of 1 MiB and more to the system at once. By default its
/// threshold for that moves up to the largest buffer freed so far, so after a prompt glibc keeps
/// its multi-megabyte activation buffers: the Q4_K engine peaked at 1.100 GiB that way against
/// 1.026 GiB with the threshold fixed (`MALLOC_MMAP_THRESHOLD_=1048576 bench_engine --one q4_k`,
/// two alternated pairs), prefill speed within the noise.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_freed_buffers() {
    // SAFETY: sets one allocator parameter at start-up, before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn main() -> anyhow::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    return_freed_buffers();
    #[cfg(unix)]
    if std::env::args_os().len() > 1 {
        default_sigpipe();
    }
    #[cfg(all(windows, not(debug_assertions)))]
    if std::env::args_os().len() > 1 {
        attach_parent_console();
    }
    #[cfg(feature = "desktop")]
    let started = std::time::Instant::now();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let parsed = Cli::parse();
    parsed.apply_global_options()?;
    match parsed.command {
        Some(command) => cli::run(command),
        #[cfg(feature = "desktop")]
        None => doctorglm::app::open_and_run(started),
        #[cfg(not(feature = "desktop"))]
        None => {
            anyhow::bail!("this build has no window (it was built without the `desktop` feature); see `doctorglm --help`")
        }
    }
}
