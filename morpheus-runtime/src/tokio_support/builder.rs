// SPDX-License-Identifier: GPL-2.0-only
//! `Builder`: a `tokio::runtime::Builder` whose workers are Morpheus workers.

use std::sync::Arc;
use std::time::Duration;

use morpheus_common::{RuntimeKind, RuntimeMode};

use crate::process::Process;
use crate::worker::{self, WorkerOptions};

type Hook = Arc<dyn Fn() + Send + Sync + 'static>;

/// Builds a Tokio runtime whose worker threads are Morpheus workers:
/// registered with scx_morpheus when it runs, budgeted always, unregistered
/// when they stop.
///
/// ```
/// use std::time::Duration;
/// use morpheus_runtime::{Builder, RuntimeMode, checkpoint};
///
/// let rt = Builder::new_multi_thread()
///     .worker_threads(2)
///     .escapable(true)                     // the kernel may force us past grace
///     .budget(Duration::from_millis(5))    // local budget per worker
///     .mode(RuntimeMode::Pressured)        // pin the mode (default: automatic)
///     .enable_all()
///     .build()
///     .unwrap();
/// rt.block_on(async {
///     tokio::spawn(async {
///         for i in 0..10_000u32 {
///             if i % 100 == 0 { checkpoint!(); }
///         }
///     })
///     .await
///     .unwrap();
/// });
/// ```
///
/// Worker threads attach when they start, with these options, and register
/// with the kernel at their first park or checkpoint: Tokio runs the same
/// start hook on blocking-pool threads, which must not take worker slots
/// (only workers park, and only async code passes checkpoints). For a
/// current-thread runtime the thread that calls `build` gets these options
/// for its own lazy attachment (the usual `build().block_on()` pattern).
/// Its threads tell Morpheus when they park and unpark, so that idle
/// workers cost the budget's monitor thread no wake-ups.
///
/// Set thread hooks through this builder ([`Builder::on_thread_start`] and
/// friends): hooks set on [`Builder::tokio_builder`] are replaced by `build`.
pub struct Builder {
    inner: tokio::runtime::Builder,
    current_thread: bool,
    opts: WorkerOptions,
    on_start: Option<Hook>,
    on_stop: Option<Hook>,
    on_park: Option<Hook>,
    on_unpark: Option<Hook>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("inner", &self.inner)
            .field("current_thread", &self.current_thread)
            .field("options", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Builder {
    fn with(inner: tokio::runtime::Builder, current_thread: bool) -> Builder {
        Builder {
            inner,
            current_thread,
            opts: WorkerOptions {
                kind: RuntimeKind::Tokio,
                ..WorkerOptions::default()
            },
            on_start: None,
            on_stop: None,
            on_park: None,
            on_unpark: None,
        }
    }

    /// A multi-thread runtime (`tokio::runtime::Builder::new_multi_thread`).
    pub fn new_multi_thread() -> Builder {
        Builder::with(tokio::runtime::Builder::new_multi_thread(), false)
    }

    /// A current-thread runtime (`tokio::runtime::Builder::new_current_thread`).
    pub fn new_current_thread() -> Builder {
        Builder::with(tokio::runtime::Builder::new_current_thread(), true)
    }

    /// Registers the workers as escapable: with `--enforce`, the scheduler
    /// may force one that ignores a hint past the grace period (never inside
    /// a critical section). Default: [`crate::Config::escapable`] (false).
    pub fn escapable(&mut self, escapable: bool) -> &mut Self {
        self.opts.escapable = Some(escapable);
        self
    }

    /// Pins the workers' mode instead of following the process's automatic
    /// mode.
    pub fn mode(&mut self, mode: RuntimeMode) -> &mut Self {
        self.opts.mode = Some(mode);
        self
    }

    /// The workers' local time budget. Default: [`crate::Config::budget`].
    pub fn budget(&mut self, budget: Duration) -> &mut Self {
        self.opts.budget = Some(budget);
        self
    }

    /// Number of worker threads (multi-thread runtime).
    pub fn worker_threads(&mut self, n: usize) -> &mut Self {
        self.inner.worker_threads(n);
        self
    }

    /// Enables Tokio's I/O and time drivers (those compiled in).
    pub fn enable_all(&mut self) -> &mut Self {
        self.inner.enable_all();
        self
    }

    /// Name of the runtime's threads.
    pub fn thread_name(&mut self, name: impl Into<String>) -> &mut Self {
        self.inner.thread_name(name);
        self
    }

    /// Runs `f` on every thread the runtime starts, after Morpheus's hook.
    pub fn on_thread_start(&mut self, f: impl Fn() + Send + Sync + 'static) -> &mut Self {
        self.on_start = Some(Arc::new(f));
        self
    }

    /// Runs `f` on every thread before it stops, before Morpheus detaches it.
    pub fn on_thread_stop(&mut self, f: impl Fn() + Send + Sync + 'static) -> &mut Self {
        self.on_stop = Some(Arc::new(f));
        self
    }

    /// Runs `f` before a worker parks, after Morpheus's hook.
    pub fn on_thread_park(&mut self, f: impl Fn() + Send + Sync + 'static) -> &mut Self {
        self.on_park = Some(Arc::new(f));
        self
    }

    /// Runs `f` after a worker unparks.
    pub fn on_thread_unpark(&mut self, f: impl Fn() + Send + Sync + 'static) -> &mut Self {
        self.on_unpark = Some(Arc::new(f));
        self
    }

    /// The wrapped Tokio builder, for settings not mirrored here. Thread
    /// hooks set on it are replaced by [`Builder::build`].
    pub fn tokio_builder(&mut self) -> &mut tokio::runtime::Builder {
        &mut self.inner
    }

    /// Builds the runtime.
    pub fn build(&mut self) -> std::io::Result<tokio::runtime::Runtime> {
        let opts = self.opts;
        let (start, stop, park, unpark) = (
            self.on_start.clone(),
            self.on_stop.clone(),
            self.on_park.clone(),
            self.on_unpark.clone(),
        );
        self.inner.on_thread_start(move || {
            worker::set_thread_defaults(opts);
            if let Some(f) = &start {
                f();
            }
        });
        self.inner.on_thread_stop(move || {
            if let Some(f) = &stop {
                f();
            }
            worker::detach();
        });
        self.inner.on_thread_park(move || {
            on_park(opts);
            if let Some(f) = &park {
                f();
            }
        });
        self.inner.on_thread_unpark(move || {
            worker::unparked();
            if let Some(f) = &unpark {
                f();
            }
        });
        if self.current_thread {
            worker::set_thread_defaults(opts);
        }
        self.inner.build()
    }
}

/// A worker parks: make sure it is attached (and registered), check that
/// no critical section is open across the park, and tell the monitor that
/// its budget cannot run out until it unparks.
fn on_park(opts: WorkerOptions) {
    let Ok(w) = worker::attach(opts) else {
        return;
    };
    w.will_park();
    if worker::hot::critical_depth() > 0 {
        Process::get().say_once(
            log::Level::Error,
            "morpheus: a worker parked inside a critical section: a critical_section() \
             guard is held across an .await; drop it before awaiting",
        );
    }
}
