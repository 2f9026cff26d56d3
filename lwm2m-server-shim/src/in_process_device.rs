//! Our simulated device (`lwm2m_client::sim::device`, the `lwm2m-client` binary's library
//! entry) run inside this process, for the demo when the binary was not built, for tests and
//! for the fleet benchmark. The device is single-threaded (`Rc` state, local tasks), so it gets
//! a thread with its own current-thread runtime.

use std::thread::JoinHandle;

use clap::Parser;
use lwm2m_client::sim::{self, device::DeviceOptions};
use tokio::sync::watch;

#[derive(Parser)]
struct DeviceCommandLine {
    #[command(flatten)]
    options: DeviceOptions,
}

/// Parses `lwm2m-client` options (without the program name), e.g. `--server=coap://...`.
pub fn parse_options<I, S>(args: I) -> Result<DeviceOptions, clap::Error>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let argv = std::iter::once("lwm2m-client".to_string()).chain(args.into_iter().map(Into::into));
    DeviceCommandLine::try_parse_from(argv).map(|c| c.options)
}

/// A simulated device on its own thread; dropping it deregisters the device and joins.
pub struct InProcessDevice {
    stop: watch::Sender<bool>,
    handle: Option<JoinHandle<()>>,
}

impl InProcessDevice {
    /// Starts a device with `lwm2m-client` options.
    pub fn start<I, S>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let options = parse_options(args)?;
        let (stop, stopped) = watch::channel(false);
        let handle = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "device runtime");
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            if let Err(e) = local.block_on(&rt, sim::device::run(options, stopped)) {
                tracing::error!(error = %e, "simulated device stopped");
            }
        });
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for InProcessDevice {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
