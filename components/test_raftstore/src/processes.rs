//! The product's binaries as processes on loopback: `regionstore-pd` over a real etcd and
//! `regionstore-server`s, each on free ports in a temporary directory, killed when dropped.
//! Tests kill them (`SIGKILL`), stop them cleanly (`SIGTERM`), pause them (`SIGSTOP`) and
//! start them again on the same directory and ports.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use crate::etcd::{free_port, wait_for_port, Etcd};

/// A binary of the workspace, next to the test executable's directory (`target/<profile>/`).
/// Panics, saying how to build it, if it is not there.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace (cargo build --profile opt --workspace)",
        path.display()
    );
    path
}

/// The configuration file of a local cluster (short ticks, sync-log on).
pub fn local_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../etc/regionstore.local.toml")
}

/// A process of the cluster: how it was started, so it can be started again.
pub struct Proc {
    name: String,
    cmd: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn spawn(name: &str, cmd: Vec<String>, log: PathBuf) -> Proc {
        let mut p = Proc { name: name.into(), cmd, log, child: None };
        p.start();
        p
    }

    /// Starts it (again), appending to its log.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log);
        let log = log.expect("process log");
        let child = Command::new(&self.cmd[0])
            .args(&self.cmd[1..])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.cmd[0]));
        self.child = Some(child);
    }

    /// Its pid, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it was started and has not been reaped.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe { libc::kill(pid as i32, sig) };
        }
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and waits up to `timeout` for it to exit; its exit status (`None`: it did not
    /// exit in time and was killed).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGCONT);
        self.signal(libc::SIGTERM);
        let mut child = self.child.take()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// SIGSTOP: it keeps its sockets but answers nothing.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`Self::pause`].
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// What it wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        self.kill();
    }
}

/// `GET path` on `addr`; the body of a 200 answer.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let ok = head.split_whitespace().nth(1) == Some("200");
    ok.then(|| body.to_string())
}

/// A local cluster of processes: one etcd, one placement driver, `n` servers.
pub struct ProcessCluster {
    /// The etcd the placement driver keeps its metadata in.
    pub etcd: Etcd,
    /// The placement driver.
    pub pd: Proc,
    /// Its address.
    pub pd_addr: String,
    /// The servers, in start order.
    pub servers: Vec<Proc>,
    /// Their gRPC addresses, by index.
    pub addrs: Vec<String>,
    /// Their status addresses, by index.
    pub status_addrs: Vec<String>,
    dir: tempfile::TempDir,
}

impl ProcessCluster {
    /// Starts etcd, the placement driver and `n` servers from empty directories, and waits
    /// until every server answers `/status`.
    pub fn start(n: usize) -> ProcessCluster {
        let etcd = Etcd::start();
        let dir = tempfile::tempdir().expect("temp dir");
        let pd_addr = format!("127.0.0.1:{}", free_port());
        let pd_cmd = vec![
            binary("regionstore-pd").display().to_string(),
            "--name=pd1".into(),
            format!("--addr={pd_addr}"),
            format!("--etcd={}", etcd.endpoint()),
        ];
        let pd = Proc::spawn("pd", pd_cmd, dir.path().join("pd.log"));
        assert!(
            wait_for_port(&pd_addr, Duration::from_secs(20)),
            "pd did not listen:\n{}",
            pd.log()
        );
        let mut cluster = ProcessCluster {
            etcd,
            pd,
            pd_addr,
            servers: Vec::new(),
            addrs: Vec::new(),
            status_addrs: Vec::new(),
            dir,
        };
        for i in 0..n {
            cluster.add_server(i);
        }
        for i in 0..n {
            cluster.wait_status(i, Duration::from_secs(60));
        }
        cluster
    }

    fn add_server(&mut self, i: usize) {
        let addr = format!("127.0.0.1:{}", free_port());
        let status = format!("127.0.0.1:{}", free_port());
        let data = self.dir.path().join(format!("server-{i}"));
        let cmd = vec![
            binary("regionstore-server").display().to_string(),
            format!("--pd={}", self.pd_addr),
            format!("--addr={addr}"),
            format!("--status-addr={status}"),
            format!("--data-dir={}", data.display()),
            format!("--config={}", local_config().display()),
        ];
        let log = self.dir.path().join(format!("server-{i}.log"));
        self.servers.push(Proc::spawn(&format!("server-{i}"), cmd, log));
        self.addrs.push(addr);
        self.status_addrs.push(status);
    }

    /// Waits until server `i`'s `/status` says its store runs; its JSON.
    pub fn wait_status(&self, i: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let body = http_get(&self.status_addrs[i], "/status");
            if let Some(body) = body.filter(|b| b.contains("\"running\":true")) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "server {i} did not come up:\n{}",
                self.servers[i].log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The store id server `i` reports.
    pub fn store_id(&self, i: usize) -> u64 {
        let body = self.wait_status(i, Duration::from_secs(30));
        let field = body.split("\"store_id\":").nth(1).expect("store_id in /status");
        field.trim_start().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    }

    /// The placement driver's endpoints, for a client.
    pub fn pd_endpoints(&self) -> Vec<String> {
        vec![self.pd_addr.clone()]
    }

    /// The directory every process keeps its data and log in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
