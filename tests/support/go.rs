//! go-iproto's own programs as test peers: the echo server, the load generator and the
//! pack-vector printer from the project's shared references (`$IPROTO_SHARED`, else
//! `<workspace>/../shared`), plus `tests/go/probe` (pings with an interval, unpacking), all
//! built once per test process into `<target>/go-peers/bin` with Debian's Go.
//!
//! [`peers`] says why the peers are unavailable (no `go`, no `golang.org/x/time`, no shared
//! copy), for the peer harness to skip or, under `CI`, fail the tests. [`GoProcess`] runs one
//! of them; dropping it kills and reaps the process.
#![allow(dead_code)] // shared by several test binaries; each uses part of it

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// The Go toolchain's own library folder that `golang-golang-x-time-dev` fills.
const X_TIME: &str = "/usr/share/gocode/src/golang.org/x/time/rate";

/// The built programs.
#[derive(Debug)]
pub struct GoPeers {
    /// Where the binaries are.
    pub bin: PathBuf,
    /// `go version`'s output, for the test log.
    pub version: String,
}

impl GoPeers {
    /// The path of program `name` (`go-echo-server`, `go-bench`, `go-pack-vectors`,
    /// `go-pack-bench`, `go-iproto-probe`).
    pub fn program(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared references: `$IPROTO_SHARED`, else `../shared` beside the workspace.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("IPROTO_SHARED").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("../shared"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"))
}

/// The Go peers, built on first use; `Err` says why they cannot be.
pub fn peers() -> Result<&'static GoPeers, String> {
    static PEERS: OnceLock<Result<GoPeers, String>> = OnceLock::new();
    PEERS.get_or_init(build).as_ref().map_err(Clone::clone)
}

fn build() -> Result<GoPeers, String> {
    let apt = "apt-get install -y golang-go golang-golang-x-time-dev";
    let version = std::process::Command::new("go")
        .arg("version")
        .output()
        .map_err(|e| format!("cannot run `go` ({e}); {apt}"))?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    if !Path::new(X_TIME).is_dir() {
        return Err(format!("{X_TIME} is missing; {apt}"));
    }
    let build_sh = shared_dir().join("peers/go/build.sh");
    if !build_sh.is_file() {
        return Err(format!("no {} (set IPROTO_SHARED to the shared references)", build_sh.display()));
    }
    let work = target_dir().join("go-peers");
    let bin = work.join("bin");
    // build.sh lays go-iproto into $PEERS_WORK/gopath (GOPATH mode, offline) and builds the
    // four stock programs; the probe is then built against the same copy.
    run_build(std::process::Command::new("bash").arg(&build_sh).arg(&bin).env("PEERS_WORK", &work), "build.sh")?;
    let gopath = format!("{}:/usr/share/gocode", work.join("gopath").display());
    run_build(
        std::process::Command::new("go")
            .args(["build", "-trimpath", "-o"])
            .arg(bin.join("go-iproto-probe"))
            .arg("./tests/go/probe")
            .current_dir(workspace_root())
            .env("GO111MODULE", "off")
            .env("GOPATH", gopath)
            .env("GOCACHE", work.join("gocache"))
            .env("GOFLAGS", "")
            .env("CGO_ENABLED", "0")
            .env("GOTOOLCHAIN", "local"),
        "go build tests/go/probe",
    )?;
    eprintln!("go peers: {version}, built into {}", bin.display());
    Ok(GoPeers { bin, version })
}

fn run_build(cmd: &mut std::process::Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Bound on anything a Go process is waited for.
pub const GO_TIMEOUT: Duration = Duration::from_secs(60);

/// A running Go program: stdout and stderr lines are collected; killed and reaped on drop.
pub struct GoProcess {
    name: String,
    child: Child,
    stdout: watch::Receiver<Vec<String>>,
    stderr: watch::Receiver<Vec<String>>,
}

fn collect<R: tokio::io::AsyncRead + Unpin + Send + 'static>(r: R) -> watch::Receiver<Vec<String>> {
    let (tx, rx) = watch::channel(Vec::new());
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tx.send_modify(|all| all.push(line));
        }
    });
    rx
}

impl GoProcess {
    /// Starts `program` with `args`.
    pub fn spawn(program: &str, args: &[&str]) -> GoProcess {
        let peers = peers().expect("the harness runs these tests only with the Go peers built");
        let mut child = Command::new(peers.program(program))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        let stdout = collect(child.stdout.take().expect("piped stdout"));
        let stderr = collect(child.stderr.take().expect("piped stderr"));
        GoProcess { name: program.to_owned(), child, stdout, stderr }
    }

    /// Starts a server program and waits (bounded) for its `listening on ADDR` line.
    pub async fn server(program: &str, args: &[&str]) -> (GoProcess, String) {
        let process = GoProcess::spawn(program, args);
        let line = process.wait_stdout("listening on ", GO_TIMEOUT).await;
        let addr = line.strip_prefix("listening on ").unwrap_or_default().to_owned();
        (process, addr)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    /// Waits (at most `limit`) for a stdout line starting with `prefix` and returns it.
    pub async fn wait_stdout(&self, prefix: &str, limit: Duration) -> String {
        let mut rx = self.stdout.clone();
        let found = tokio::time::timeout(limit, rx.wait_for(|l| l.iter().any(|l| l.starts_with(prefix)))).await;
        match found {
            Ok(Ok(lines)) => lines.iter().find(|l| l.starts_with(prefix)).cloned().unwrap_or_default(),
            _ => panic!(
                "{} printed no line starting with {prefix:?} within {limit:?}; stderr: {:?}",
                self.name,
                self.stderr()
            ),
        }
    }

    /// Everything printed on stderr so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.borrow().clone()
    }

    /// Everything printed on stdout so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.borrow().clone()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status =
            std::process::Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits (at most `limit`) for the process to exit.
    pub async fn wait(&mut self, limit: Duration) -> ExitStatus {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => panic!("wait for {}: {e}", self.name),
            Err(_) => panic!("{} did not exit within {limit:?}; stderr: {:?}", self.name, self.stderr()),
        }
    }

    /// Waits (at most `limit`) for the process to exit and for its output to be read; returns
    /// its exit status and stdout.
    pub async fn finish(mut self, limit: Duration) -> (ExitStatus, Vec<String>) {
        let status = self.wait(limit).await;
        let mut rx = self.stdout.clone();
        // The reader task ends at EOF, which closes the watch channel.
        let _ = tokio::time::timeout(limit, async { while rx.changed().await.is_ok() {} }).await;
        (status, self.stdout())
    }
}

/// Runs `program` with `args` to completion (bounded by `limit`); returns the exit status,
/// the last stdout line parsed as JSON, and stderr.
pub async fn run_json(program: &str, args: &[&str], limit: Duration) -> (ExitStatus, serde_json::Value, Vec<String>) {
    let process = GoProcess::spawn(program, args);
    let stderr = process.stderr.clone();
    let (status, stdout) = process.finish(limit).await;
    let stderr = stderr.borrow().clone();
    let last =
        stdout.last().unwrap_or_else(|| panic!("{program} {args:?} printed nothing ({status}); stderr: {stderr:?}"));
    let json = serde_json::from_str(last).unwrap_or_else(|e| panic!("{program} printed {last:?}, not JSON: {e}"));
    (status, json, stderr)
}

/// Runs `program` feeding `input` on stdin; returns its stdout lines (bounded by `limit`).
pub async fn run_with_input(program: &str, args: &[&str], input: &str, limit: Duration) -> Vec<String> {
    use tokio::io::AsyncWriteExt;
    let peers = peers().expect("the harness runs these tests only with the Go peers built");
    let mut child = Command::new(peers.program(program))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_owned();
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let run = async move {
        stdin.write_all(input.as_bytes()).await.expect("write stdin");
        drop(stdin);
        let (mut out, mut err) = (String::new(), String::new());
        let (a, b) = tokio::join!(stdout.read_to_string(&mut out), stderr.read_to_string(&mut err));
        a.and(b).expect("read output");
        let status = child.wait().await.expect("wait");
        assert!(status.success(), "{program} failed ({status}): {err}");
        out
    };
    let out =
        tokio::time::timeout(limit, run).await.unwrap_or_else(|_| panic!("{program} did not finish within {limit:?}"));
    out.lines().map(str::to_owned).collect()
}
