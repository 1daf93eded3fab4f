//! The `iproto serve` CLI as a child process, so that its memory can be read on its own
//! (`/proc/PID/status`). The binary is built (once per test process) with
//! `cargo build -p mr-iproto-cli`; the guard kills the process on drop.
#![allow(dead_code)] // shared by several test binaries; each uses part of it

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::watch;

/// The `iproto` binary, built if needed (once per test process).
pub fn binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    BUILT
        .get_or_init(|| {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            // Always ask cargo: it is quick when the binary is fresh and rebuilds a stale one.
            let status = Command::new(cargo)
                .args(["build", "-q", "-p", "mr-iproto-cli", "--bin", "iproto"])
                .current_dir(&root)
                .status()
                .expect("run cargo build");
            assert!(status.success(), "cargo build -p mr-iproto-cli failed");
            let bin = target.join("debug").join("iproto");
            assert!(bin.exists(), "no binary at {}", bin.display());
            bin
        })
        .clone()
}

/// A running `iproto serve ADDR --echo ...`; killed on drop.
pub struct ServerProcess {
    child: Child,
    /// `host:port` it listens on.
    pub addr: String,
    log: watch::Receiver<Vec<String>>,
}

impl ServerProcess {
    /// Starts `iproto serve 127.0.0.1:0 --echo <extra>` and waits for its `listening on` line.
    pub fn start(extra: &[&str]) -> ServerProcess {
        let mut child = Command::new(binary())
            .args(["serve", "127.0.0.1:0", "--echo"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn iproto serve");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (log_tx, log) = watch::channel(Vec::new());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log_tx.send_modify(|lines| lines.push(line));
            }
        });
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok);
            let _ = addr_tx.send(first);
            for _ in lines {} // keep the pipe drained
        });
        let mut guard = ServerProcess { child, addr: String::new(), log };
        let first = addr_rx.recv_timeout(Duration::from_secs(60)).ok().flatten();
        let addr = first.as_deref().and_then(|l| l.strip_prefix("listening on "));
        guard.addr =
            addr.unwrap_or_else(|| panic!("unexpected first line {first:?}; log: {:?}", guard.log())).to_owned();
        guard
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("read /proc status");
        let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field} in status"));
        line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number of kB")
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// Peak resident memory so far, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// Address space mapped now, in KiB: unlike resident memory it includes what was reserved
    /// but never touched, such as a buffer allocated for a claimed length.
    pub fn address_space_kib(&self) -> u64 {
        self.status_kib("VmSize:")
    }

    /// Peak mapped address space so far, in KiB.
    pub fn peak_address_space_kib(&self) -> u64 {
        self.status_kib("VmPeak:")
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything logged to stderr so far.
    pub fn log(&self) -> Vec<String> {
        self.log.borrow().clone()
    }

    /// Waits (at most `limit`) for a log line containing `needle`.
    pub async fn wait_log(&self, needle: &str, limit: Duration) -> bool {
        let mut rx = self.log.clone();
        let found = tokio::time::timeout(limit, rx.wait_for(|lines| lines.iter().any(|l| l.contains(needle)))).await;
        matches!(found, Ok(Ok(_)))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
