//! What the examples share.

/// Logs to stderr with `RUST_LOG`'s filter when it is set, else warnings
/// and errors: a step that leaves an input out (a series without a
/// segmentation, an unreadable file) says so with a warning naming it, and
/// that warning must reach the user.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
