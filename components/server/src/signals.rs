//! How a server process is told to stop: SIGTERM or SIGINT asks for a clean stop; a second
//! one ends the process at once (exit code 1), so a stop (or a start) held up by an
//! unreachable placement driver, say, can be cut short. The handlers are installed first
//! thing, so a signal during start-up is not lost: the process stops cleanly once started.

use std::sync::mpsc;

use tokio::signal::unix::{signal, Signal, SignalKind};

/// Installed signal handlers. See the module docs.
pub struct Signals {
    first: mpsc::Receiver<()>,
}

impl Signals {
    /// Installs the handlers; `name` prefixes the message of a second signal.
    pub fn install(name: &'static str) -> std::io::Result<Signals> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (mut term, mut int) = rt.block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
            ))
        })?;
        let (tx, first) = mpsc::channel();
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            rt.block_on(either(&mut term, &mut int));
            let _ = tx.send(());
            rt.block_on(either(&mut term, &mut int));
            eprintln!("{name}: a second signal: exiting without a clean stop");
            // _exit: no exit handlers or C++ destructors while RocksDB's threads still run
            // (what a kill would leave is what the next start recovers from).
            // SAFETY: _exit ends the process at once; nothing of ours runs after it.
            unsafe { libc::_exit(1) };
        })?;
        Ok(Signals { first })
    }

    /// Blocks until the first SIGTERM or SIGINT (at once if one came already).
    pub fn wait(&self) {
        let _ = self.first.recv();
    }
}

async fn either(term: &mut Signal, int: &mut Signal) {
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
