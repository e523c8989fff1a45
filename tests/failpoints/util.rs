//! What the fail point tests share.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

/// Holds the apply threads of one store before they write, until released or dropped.
pub struct ApplyPause(Arc<AtomicBool>);

impl ApplyPause {
    /// Pauses the apply threads of `store_id` (fail point `apply_before_write`).
    pub fn on_store(store_id: u64) -> Self {
        let paused = Arc::new(AtomicBool::new(true));
        let (flag, prefix) = (paused.clone(), format!("apply-{store_id}"));
        fail::cfg_callback("apply_before_write", move || {
            let here = std::thread::current().name().is_some_and(|n| n.starts_with(&prefix));
            while here && flag.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
        })
        .unwrap();
        ApplyPause(paused)
    }

    /// Lets apply go on.
    pub fn release(&self) {
        self.0.store(false, Ordering::Release);
        fail::remove("apply_before_write");
    }
}

impl Drop for ApplyPause {
    // A failed assertion must not leave apply paused.
    fn drop(&mut self) {
        self.release();
    }
}
