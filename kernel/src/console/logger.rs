//! The kernel's leveled logger (the `log` crate's facade), writing to the serial console.
//!
//! Lines look like `[info  mm::heap] message`. The level comes from the command line
//! (`log=error|warn|info|debug|trace`, default `info`).

use log::{Level, LevelFilter, Log, Metadata, Record};

struct SerialLogger;

static LOGGER: SerialLogger = SerialLogger;

impl Log for SerialLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        };
        let target = record.target().strip_prefix("kernel::").unwrap_or(record.target());
        crate::println!("[{level:<5} {target}] {}", record.args());
    }

    fn flush(&self) {}
}

/// Installs the logger with `level`.
pub fn init(level: LevelFilter) {
    // Setting the logger twice is the only error, and we do it once.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
