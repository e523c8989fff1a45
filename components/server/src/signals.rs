//! How a server process waits to be told to stop: SIGTERM or SIGINT starts a clean stop; a
//! second one, while that stop runs, ends the process at once (exit code 1), so a stop held
//! up (by an unreachable placement driver, say) can be cut short.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// Blocks until SIGTERM or SIGINT, and arms the second-signal exit; `name` prefixes its
/// message.
pub fn wait_for_signal(name: &'static str) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (mut term, mut int) = rt.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;
    async fn either(term: &mut Signal, int: &mut Signal) {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    rt.block_on(either(&mut term, &mut int));
    std::thread::spawn(move || {
        rt.block_on(either(&mut term, &mut int));
        eprintln!("{name}: a second signal: exiting without a clean stop");
        // _exit: no exit handlers or C++ destructors while RocksDB's threads still run
        // (what a kill would leave is what the next start recovers from).
        // SAFETY: _exit ends the process at once; nothing of ours runs after it.
        unsafe { libc::_exit(1) };
    });
    Ok(())
}
