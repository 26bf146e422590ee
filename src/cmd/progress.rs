//! The live progress display of a blast (also smoke's): a thread that reads
//! the engine's counters ten times a second and draws them on stderr.
//!
//! Owns that thread's life: started only when `cmd` decided a display is
//! wanted, drawn only once the clients are released, cleared before the
//! report is printed. Must never block or fail the run: no display is shown
//! when the thread cannot start.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::blast::Progress;

/// A running display; [`Display::finish`] clears it.
pub struct Display {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Display {
    /// Starts drawing `progress` once its clients are released: a bar of
    /// `planned` requests, or a spinner that says "finishing" after `duration`.
    pub fn start(
        progress: Arc<Progress>,
        planned: Option<u64>,
        duration: Option<Duration>,
    ) -> Display {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("lsbaws-progress".into())
            .spawn(move || {
                let mut shown: Option<(indicatif::ProgressBar, Instant)> = None;
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    if !progress.released.load(Ordering::Relaxed) {
                        continue;
                    }
                    let (bar, since) = shown.get_or_insert_with(|| {
                        (crate::render::progress::bar(planned), Instant::now())
                    });
                    let secs = since.elapsed().as_secs_f64();
                    let finishing = duration.is_some_and(|d| since.elapsed() >= d);
                    crate::render::progress::update(
                        bar,
                        progress.done.load(Ordering::Relaxed),
                        progress.failed.load(Ordering::Relaxed),
                        secs,
                        finishing,
                    );
                }
                if let Some((bar, _)) = shown {
                    // The report follows on stdout; a finished bar would only
                    // repeat it.
                    bar.finish_and_clear();
                }
            })
            .ok();
        Display { stop, thread }
    }

    /// Stops and clears the display.
    pub fn finish(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        self.stop_now();
    }
}
