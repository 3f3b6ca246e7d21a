//! Keeping rayon's workers awake through a model step.
//!
//! A decode step is about a hundred parallel products with short serial stretches between them
//! (norms, RoPE, the cache append). rayon puts a worker that finds no work to sleep after a few
//! rounds of looking, and the next product then waits for the kernel to wake it — on a VM, for
//! the host to run a halted virtual CPU again. [`run_with_workers_awake`] runs a step on one
//! worker while every other worker of the pool keeps looking for work (`rayon::yield_now`) until
//! the step returns: the products then start on every core at once. Between steps the workers
//! sleep as before, so an idle application does not spin.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a helper looks for work without finding any before it returns to rayon (and sleeps
/// there). A decode step's serial stretches take tens of microseconds. The limit also rules out
/// a wait on itself: a helper runs nested on whatever its worker was doing, possibly unfinished
/// work of its own step (when several steps share the pool), which would otherwise wait for the
/// helper while the helper waits for the step.
const MAX_IDLE: Duration = Duration::from_millis(2);

/// Runs `step` on a worker of the current rayon pool while the pool's other workers spin looking
/// for work (and run whatever parallel work `step` makes), each for as long as the step lasts or
/// until it found nothing for [`MAX_IDLE`]; returns what `step` returns. A panic in `step`
/// releases the workers and reaches the caller.
pub fn run_with_workers_awake<R: Send>(step: impl FnOnce() -> R + Send) -> R {
    let done = AtomicBool::new(false);
    rayon::scope(|s| {
        // Whatever happens to `step`, the helpers stop when this goes out of scope: the scope
        // waits for them before it returns or unwinds, and without it a panicking step would
        // leave them to the idle limit.
        let _release = Release(&done);
        let stepper = rayon::current_thread_index();
        for _ in 1..rayon::current_num_threads() {
            let done = &done;
            s.spawn(move |_| {
                // The stepping thread may pick a helper up while it waits inside a product;
                // spinning there until the step ends would wait for itself.
                if rayon::current_thread_index() == stepper {
                    return;
                }
                let mut busy = Instant::now();
                while !done.load(Ordering::Acquire) {
                    if rayon::yield_now() == Some(rayon::Yield::Executed) {
                        busy = Instant::now();
                    } else if crate::warm::pull() {
                        // No job: pull the next product's weights toward the cache meanwhile.
                    } else if busy.elapsed() > MAX_IDLE {
                        return;
                    } else {
                        std::hint::spin_loop();
                    }
                }
            });
        }
        step()
    })
}

/// Sets the flag when dropped.
struct Release<'a>(&'a AtomicBool);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        // What the step posted for its helpers to pull (`warm`) ends with it.
        crate::warm::clear();
        self.0.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn parallel_work_inside_the_step_runs_and_the_result_comes_back() {
        for threads in [1, 2, 4] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let sum = pool.install(|| {
                run_with_workers_awake(|| (0..200u64).map(|i| (0..10_000u64).into_par_iter().map(|x| x ^ i).sum::<u64>()).sum::<u64>())
            });
            let want: u64 = (0..200u64).map(|i| (0..10_000u64).map(|x| x ^ i).sum::<u64>()).sum();
            assert_eq!(sum, want, "{threads} threads");
            // Called again, and from outside the pool (on one of its workers then).
            assert_eq!(pool.install(|| run_with_workers_awake(|| 7)), 7);
        }
        assert!(run_with_workers_awake(|| rayon::current_thread_index().is_some()));
    }

    #[test]
    fn steps_started_at_once_from_several_threads_all_finish() {
        // Several steps share one pool: a helper of one step can end up on a worker above (on
        // the stack of) unfinished work of its own step, which the idle limit releases. (Forty
        // runs without the limit did not hang either: the case is rare, not ruled out.)
        let pool = std::sync::Arc::new(rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        for caller in 0..4u64 {
            let (pool, tx) = (pool.clone(), tx.clone());
            std::thread::spawn(move || {
                for round in 0..30u64 {
                    let got = pool.install(|| {
                        run_with_workers_awake(|| (0..8u64).into_par_iter().map(|i| (0..2000u64).into_par_iter().map(|x| x * i + caller + round).sum::<u64>()).sum::<u64>())
                    });
                    let want: u64 = (0..8u64).map(|i| (0..2000u64).map(|x| x * i + caller + round).sum::<u64>()).sum();
                    tx.send(got == want).unwrap();
                }
            });
        }
        for _ in 0..4 * 30 {
            let ok = rx.recv_timeout(std::time::Duration::from_secs(120)).expect("every step finishes");
            assert!(ok);
        }
    }

    // The panic must reach the caller and leave the pool usable. (Whether the guard or the idle
    // limit stops the helpers is not observable here: both end the wait.)
    #[test]
    fn a_panicking_step_releases_the_workers_and_reaches_the_caller() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.install(|| run_with_workers_awake(|| -> u32 { panic!("step failed") }))));
        assert!(caught.is_err());
        // The pool still works: no helper is left spinning.
        assert_eq!(pool.install(|| (0..100u32).into_par_iter().sum::<u32>()), 4950);
    }
}
