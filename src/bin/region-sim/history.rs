//! The operation history: one JSON object per event, for any linearizability checker.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::Path,
    sync::Mutex,
    time::Instant,
};

use serde::Serialize;

/// One event of one client.
#[derive(Serialize)]
pub struct Event<'a> {
    /// The client (thread) number.
    pub process: usize,
    /// "invoke", then one of "ok", "fail" (definitely not applied), "info" (unknown outcome).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// "read" or "write".
    pub f: &'static str,
    /// The key.
    pub key: &'a str,
    /// The value written, or read (null when absent).
    pub value: Option<&'a str>,
    /// Nanoseconds since the run started.
    pub time_ns: u64,
}

/// Writes events, shared by the clients.
pub struct History {
    out: Option<Mutex<BufWriter<File>>>,
    start: Instant,
}

impl History {
    /// A history written to `path`, or none.
    pub fn create(path: Option<&Path>, start: Instant) -> std::io::Result<Self> {
        let out = match path {
            Some(p) => Some(Mutex::new(BufWriter::new(File::create(p)?))),
            None => None,
        };
        Ok(History { out, start })
    }

    /// Time since the start.
    pub fn elapsed(&self) -> std::time::Duration {
        self.start.elapsed()
    }

    /// Nanoseconds since the start.
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Records an event.
    pub fn record(&self, event: &Event<'_>) {
        let Some(out) = &self.out else { return };
        let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
        // A failed history write must not stop the run; it is reported at the end by flush.
        let _ = serde_json::to_writer(&mut *out, event);
        let _ = out.write_all(b"\n");
    }

    /// Flushes the file.
    pub fn flush(&self) -> std::io::Result<()> {
        match &self.out {
            Some(out) => out.lock().unwrap_or_else(|e| e.into_inner()).flush(),
            None => Ok(()),
        }
    }
}
