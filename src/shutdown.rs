//! SIGINT/SIGTERM: the first asks for a graceful stop (no new rows, in-flight calls
//! finish, the checkpoint is flushed); the second exits at once with 130. Either way the
//! checkpoint stays consistent: SQLite transactions are atomic, and a POST in flight has
//! its intent recorded, so the next run verifies it instead of re-sending.

use std::sync::Arc;

use tokio::sync::watch;

/// Shared stop request.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
    tx: Arc<watch::Sender<bool>>,
}

impl Shutdown {
    /// A stop request nobody has made yet (tests, and the base of [`Shutdown::on_signals`]).
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(false);
        Shutdown {
            rx,
            tx: Arc::new(tx),
        }
    }

    /// Listens for SIGINT and SIGTERM. Must be called inside a tokio runtime.
    pub fn on_signals() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let shutdown = Shutdown::new();
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            for count in 1.. {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                if count == 1 {
                    eprintln!(
                        "\nstopping: no new rows; waiting for calls in flight (signal again to stop at once)"
                    );
                    trigger.request();
                } else {
                    eprintln!("stopped at once; the checkpoint is consistent, run again to resume");
                    std::process::exit(crate::exit_code::ExitCode::Interrupted as i32);
                }
            }
        });
        Ok(shutdown)
    }

    /// Asks for a graceful stop.
    pub fn request(&self) {
        let _ = self.tx.send(true);
    }

    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once a stop is asked for.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}
