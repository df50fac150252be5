//! Graceful shutdown on SIGTERM / SIGINT.

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGTERM or SIGINT (Kubernetes sends SIGTERM before killing).
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received: shutting down gracefully"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received: shutting down gracefully"),
        }
        cancel.cancel();
    });
    token
}
