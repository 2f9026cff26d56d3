//! Our simulated device ([`device::run`](super::device::run), the `lwm2m-client` binary's
//! library entry) run on a thread of the calling process: for tests and benchmarks that drive
//! devices through a server on loopback without starting processes. The device is
//! single-threaded (`Rc` state), so each runner thread gets its own current-thread runtime, and
//! several devices share one thread as local tasks (the fleet benchmark runs thousands that way).

use std::thread::JoinHandle;

use tokio::sync::watch;

use super::device::{self, CliError, DeviceOptions};

/// Simulated devices on one thread; dropping it deregisters them and joins the thread.
pub struct InThreadDevice {
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<Vec<Result<(), CliError>>>>,
}

impl InThreadDevice {
    /// Starts one device with `options`.
    pub fn start(options: DeviceOptions) -> Self {
        Self::start_all(vec![options])
    }

    /// Starts one device with `lwm2m-client` command-line options (without the program
    /// name), e.g. `--server=coap://127.0.0.1:5683`.
    pub fn start_args<I, S>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        DeviceOptions::from_args(args).map(Self::start)
    }

    /// Starts every device of `options` as a local task on one thread.
    pub fn start_all(options: Vec<DeviceOptions>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let thread = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let n = options.len();
                    let error = || CliError::Net(std::io::Error::new(e.kind(), e.to_string()));
                    return (0..n).map(|_| Err(error())).collect();
                }
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                let tasks: Vec<_> = options
                    .into_iter()
                    .map(|o| tokio::task::spawn_local(device::run(o, stopped.clone())))
                    .collect();
                let mut ended = Vec::with_capacity(tasks.len());
                for task in tasks {
                    match task.await {
                        Ok(result) => ended.push(result),
                        // A device that panicked makes this thread panic, as if run directly.
                        Err(e) => std::panic::resume_unwind(e.into_panic()),
                    }
                }
                ended
            })
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Whether every device stopped by itself (e.g. a simulated power cut).
    pub fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for devices that stop by themselves; returns how the first one that failed ended
    /// (`Ok` when none did).
    pub fn join(mut self) -> Result<(), CliError> {
        first_error(self.wait())
    }

    /// Deregisters and stops the devices; returns how the first one that failed ended.
    pub fn stop(self) -> Result<(), CliError> {
        first_error(self.stop_all())
    }

    /// Deregisters and stops the devices; returns how each ended, in start order.
    pub fn stop_all(mut self) -> Vec<Result<(), CliError>> {
        let _ = self.stop.send(true);
        self.wait()
    }

    fn wait(&mut self) -> Vec<Result<(), CliError>> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(ended)) => ended,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => Vec::new(),
        }
    }
}

fn first_error(ended: Vec<Result<(), CliError>>) -> Result<(), CliError> {
    ended.into_iter().find(Result::is_err).unwrap_or(Ok(()))
}

impl Drop for InThreadDevice {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
