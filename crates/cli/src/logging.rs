//! Structured logs: human-readable text or JSON lines, filtered like RUST_LOG.

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Logs go to standard error, filtered by `filter`, else `RUST_LOG`, else `default`: `info`
/// for the long-running commands (`serve`, `demo`), `warn` for the rest, whose output is
/// their answer alone.
pub fn init(filter: Option<&str>, format: Format, default: &str) {
    let filter = match filter {
        Some(f) => EnvFilter::new(f),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        Format::Text => builder.init(),
        Format::Json => builder.json().init(),
    }
}
