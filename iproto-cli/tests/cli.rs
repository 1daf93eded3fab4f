//! Runs the real `iproto` binary: each subcommand, against servers started with
//! `iproto serve`, and the one-line errors for bad input.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_iproto");

/// An `iproto serve` child process, killed when dropped (pass or fail).
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    /// Starts `iproto serve ARGS...` and waits for its `listening on` line.
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn iproto serve");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        let read = BufReader::new(stdout).read_line(&mut line);
        let mut server = Server { child, addr: String::new() };
        read.expect("read the first line of iproto serve");
        server.addr =
            line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("first line: {line:?}")).into();
        server
    }

    fn echo() -> Server {
        Server::start(&["127.0.0.1:0", "--echo"])
    }

    fn stderr(&mut self) -> BufReader<ChildStderr> {
        BufReader::new(self.child.stderr.take().expect("piped stderr"))
    }

    /// Sends SIGINT (Ctrl-C) and waits for the exit.
    fn interrupt(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-INT", &pid]).status().expect("run kill");
        assert!(killed.success());
        self.child.wait().expect("wait for iproto serve")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn iproto(args: &[&str]) -> Output {
    Command::new(BIN).args(args).stdin(Stdio::null()).output().expect("run iproto")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failed run with exactly one line on stderr containing `needle`, and no panic.
fn assert_one_line_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got {:?}; stderr {err}", o.status);
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "panic: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line expected: {err}");
    assert!(err.contains(needle), "{needle:?} not in {err:?}");
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "stderr: {}", stderr(o));
    let text = stdout(o);
    assert_eq!(text.trim_end().lines().count(), 1, "one JSON line: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON {text:?}: {e}"))
}

/// A TCP port nothing listens on.
fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    addr
}

#[test]
fn help_has_examples_for_every_subcommand() {
    for sub in ["call", "ping", "serve", "decode", "bench"] {
        let o = iproto(&[sub, "--help"]);
        assert!(o.status.success(), "{sub}");
        assert!(stdout(&o).contains("Examples:"), "{sub} --help lacks examples");
    }
    assert!(stdout(&iproto(&["--help"])).contains("iproto bench"));
}

#[test]
fn call_packs_and_unpacks() {
    let s = Server::echo();
    let o = iproto(&[
        "call",
        &s.addr,
        "17",
        "--pack",
        r#"u32:7 ber:300 str:"hello" bytes:0a0b"#,
        "--unpack",
        "u32 ber str bytes",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "u32 7\nber 300\nstr \"hello\"\nbytes 0a0b\n");
}

#[test]
fn call_hex_body_and_dump() {
    let s = Server::echo();
    let o = iproto(&["call", &s.addr, "0x11", "4f4b"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "00000000  4f 4b                                             |OK|\n");
    let o = iproto(&["call", &s.addr, "1", "--hex", "0a 0b", "--plain"]);
    assert_eq!(stdout(&o), "0a0b\n");
}

#[test]
fn call_body_from_file() {
    let s = Server::echo();
    let path = std::env::temp_dir().join(format!("iproto-cli-test-{}.bin", std::process::id()));
    std::fs::write(&path, b"\x01\x02\x03").unwrap();
    let o = iproto(&["call", &s.addr, "5", "--file", path.to_str().unwrap(), "--plain"]);
    let _ = std::fs::remove_file(&path);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "010203\n");
    let o = iproto(&["call", &s.addr, "5", "--file", "/nonexistent/body.bin"]);
    assert_one_line_error(&o, "cannot read /nonexistent/body.bin");
}

#[test]
fn call_over_unix_socket() {
    let path = std::env::temp_dir().join(format!("iproto-cli-test-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let addr = format!("unix:{}", path.display());
    let s = Server::start(&[&addr, "--echo"]);
    assert_eq!(s.addr, addr);
    let o = iproto(&["call", &addr, "1", "--pack", "u16:258", "--plain"]);
    assert_eq!(stdout(&o), "0201\n", "{}", stderr(&o));
    let o = iproto(&["ping", &addr, "-c", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&iproto(&["bench", &addr, "--requests", "200", "--concurrency", "4", "--json"]));
    assert_eq!((r["calls"].as_u64(), r["errors"].as_u64()), (Some(200), Some(0)));
    assert_eq!(s.interrupt().code(), Some(0));
    assert!(!path.exists(), "socket file left behind");
}

#[test]
fn ping_counts_replies() {
    let s = Server::echo();
    let o = iproto(&["ping", &s.addr, "--count", "3", "--interval", "10ms"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.matches("reply from").count(), 3, "{out}");
    assert!(out.contains("3 sent, 3 received, 0% loss"), "{out}");
    assert!(out.contains("rtt min/avg/max"), "{out}");
}

#[test]
fn serve_without_echo_logs_and_does_not_reply() {
    let mut s = Server::start(&["127.0.0.1:0"]);
    let mut log = s.stderr();
    let o = iproto(&["call", &s.addr, "42", "cafe", "--timeout", "300ms"]);
    assert_one_line_error(&o, "timed out");
    // Wait for the logged request, then shut down with Ctrl-C.
    let mut line = String::new();
    while !line.contains("request") {
        line.clear();
        assert!(log.read_line(&mut line).unwrap() > 0, "server stderr ended before the request was logged");
    }
    assert!(line.contains("msg=42") && line.contains("cafe"), "{line}");
    let status = s.interrupt();
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut log, &mut rest);
    assert!(rest.contains("shutting down gracefully"), "{rest}");
}

#[test]
fn serve_max_conns_refuses_extra_clients() {
    let s = Server::start(&["127.0.0.1:0", "--echo", "--max-conns", "1"]);
    // The first client holds its connection: wait for its first reply.
    let mut first = Command::new(BIN).args(["ping", &s.addr, "-i", "10s"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(first.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let o = iproto(&["call", &s.addr, "1", "00", "--timeout", "2s"]);
    let _ = first.kill();
    let _ = first.wait();
    assert!(line.starts_with("reply from"), "{line}");
    assert!(!o.status.success(), "second connection should be refused: {}", stdout(&o));
    assert!(stderr(&o).starts_with("iproto: error: call to"), "{}", stderr(&o));
}

#[test]
fn serve_idle_timeout_closes_silent_connections() {
    let s = Server::start(&["127.0.0.1:0", "--echo", "--idle-timeout", "100ms"]);
    let o = iproto(&["ping", &s.addr, "-c", "2", "-i", "1500ms"]);
    let out = stdout(&o);
    assert!(out.contains("seq=1 time="), "{out}");
    assert!(out.contains("no reply from") && out.contains("seq=2"), "{out}");
    assert!(out.contains("2 sent, 1 received, 50% loss"), "{out}");
}

#[test]
fn serve_size_limit_closes_oversized_requests() {
    let s = Server::start(&["127.0.0.1:0", "--echo", "--size-limit", "4"]);
    let o = iproto(&["call", &s.addr, "1", "01020304", "--plain"]);
    assert_eq!(stdout(&o), "01020304\n", "{}", stderr(&o));
    let o = iproto(&["call", &s.addr, "1", "0102030405"]);
    assert!(!o.status.success());
    assert!(stderr(&o).starts_with("iproto: error: call to"), "{}", stderr(&o));
}

#[test]
fn decode_offline() {
    let o = iproto(&["decode", "--unpack", "u32 ber berstr raw", "07000000", "822c 02 6869", "ffff"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "u32 7\nber 300\nberstr \"hi\"\nraw ffff\n");
    let o = iproto(&["decode", "--unpack", "u16", "010203"]);
    assert_eq!(stdout(&o), "u16 513\nrest 03\n");
    let o = iproto(&["decode", "--unpack", "u32", "0102"]);
    assert_one_line_error(&o, "field 1 (u32)");
    let mut child = Command::new(BIN)
        .args(["decode", "--unpack", "i16", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"2efb\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(stdout(&o), "i16 -1234\n");
}

#[test]
fn bench_against_echo_server() {
    let s = Server::echo();
    let o = iproto(&[
        "bench",
        &s.addr,
        "--requests",
        "3000",
        "--conns",
        "2",
        "--concurrency",
        "8",
        "--size",
        "100",
        "--json",
    ]);
    let r = json(&o);
    assert_eq!(r["calls"], 3000);
    assert_eq!(r["errors"], 0);
    assert_eq!(r["errors_by_kind"], serde_json::json!({}));
    assert_eq!((r["conns"].as_u64(), r["concurrency"].as_u64(), r["size"].as_u64()), (Some(2), Some(8), Some(100)));
    for key in ["calls_per_sec", "p50_us", "p90_us", "p99_us", "p999_us", "max_us"] {
        assert!(r[key].is_number(), "{key}: {r}");
    }
    assert!(r["p50_us"].as_u64() <= r["max_us"].as_u64());
}

#[test]
fn bench_embedded_server_table_and_json() {
    let o = iproto(&["bench", "--duration", "300ms", "--concurrency", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    for row in ["embedded echo server", "calls/s", "MB/s", "errors       0", "p99.9"] {
        assert!(table.contains(row), "{row:?} not in {table}");
    }
    let r = json(&iproto(&["bench", "--requests", "500", "--rate", "5000", "--json"]));
    assert_eq!((r["calls"].as_u64(), r["errors"].as_u64()), (Some(500), Some(0)));
    assert_eq!(r["rate"], 5000.0);
}

#[test]
fn bench_counts_timeouts_by_kind() {
    let s = Server::start(&["127.0.0.1:0"]); // logs, never replies
    let r = json(&iproto(&["bench", &s.addr, "--requests", "4", "--concurrency", "2", "--timeout", "200ms", "--json"]));
    assert_eq!(r["calls"], 0);
    assert_eq!(r["errors"], 4);
    assert_eq!(r["errors_by_kind"]["timeout"], 4);
}

#[test]
fn bench_callers_stop_when_the_server_drops_the_connection() {
    // Every 32-byte request exceeds the limit, so the server closes the connection at once.
    let s = Server::start(&["127.0.0.1:0", "--echo", "--size-limit", "4"]);
    let r = json(&iproto(&["bench", &s.addr, "--concurrency", "6", "--duration", "30s", "--json"]));
    assert_eq!(r["calls"], 0);
    assert_eq!(r["errors"], 6, "{r}");
}

#[test]
fn bad_input_gives_one_line() {
    let s = Server::echo();
    assert_one_line_error(&iproto(&["call", &s.addr, "1", "0a0"]), "odd number of hex digits");
    assert_one_line_error(&iproto(&["call", &s.addr, "1", "xyz"]), "invalid hex character 'x'");
    assert_one_line_error(&iproto(&["call", &s.addr, "1", "--pack", "u33:1"]), "unknown spec word \"u33\"");
    assert_one_line_error(&iproto(&["call", &s.addr, "1", "--pack", "u8:7", "--unpack", "u32"]), "field 1 (u32)");
    let dead = dead_addr();
    assert_one_line_error(&iproto(&["call", &dead, "1"]), "refused");
    assert_one_line_error(&iproto(&["ping", &dead, "-c", "1"]), "refused");
    assert_one_line_error(&iproto(&["bench", &dead, "--duration", "1"]), "refused");
    assert_one_line_error(&iproto(&["call", "no-port", "1"]), "invalid address");
    assert_one_line_error(&iproto(&["bench", &s.addr, "--msg", "0xff00"]), "reserved");
    assert_one_line_error(&iproto(&["serve", &s.addr]), "in use");
    // clap's own usage errors: non-zero, no panic.
    let o = iproto(&["decode", "--unpack", "u32 nope", "00"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown spec word \"nope\""));
    let o = iproto(&["call", &s.addr, "notanumber"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn serve_write_timeout_drops_a_client_that_never_reads() {
    use std::io::Write;
    let mut s = Server::start(&["127.0.0.1:0", "--echo", "--write-timeout", "200ms", "--write-queue", "2"]);
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let err = s.stderr();
    std::thread::spawn(move || {
        for line in err.lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // A client that sends 64 KiB requests and never reads a reply.
    let mut conn = std::net::TcpStream::connect(&s.addr).expect("connect");
    std::thread::spawn(move || {
        let body = vec![7u8; 64 * 1024];
        let mut packet = Vec::new();
        packet.extend_from_slice(&1u32.to_le_bytes());
        packet.extend_from_slice(&(body.len() as u32).to_le_bytes());
        packet.extend_from_slice(&1u32.to_le_bytes());
        packet.extend_from_slice(&body);
        // Ends when the server drops the connection.
        while conn.write_all(&packet).is_ok() {}
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains("write timed out after 200ms") => break,
            Ok(line) => seen.push(line),
            Err(_) => panic!("no write-timeout drop logged; stderr: {seen:?}"),
        }
    }
    // The server still serves others.
    let o = iproto(&["call", &s.addr, "1", "0a0b", "--plain"]);
    assert_eq!(stdout(&o), "0a0b\n", "{}", stderr(&o));
}

#[test]
fn call_over_a_list_places_a_keyed_call_and_needs_the_key() {
    let (a, b) = (Server::echo(), Server::echo());
    let list = format!("{},{}:2", a.addr, b.addr);
    let o = iproto(&["call", &list, "17", "0a0b", "--balance", "ketama", "--key", "user:42", "--plain"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "0a0b\n");
    let o = iproto(&["call", &list, "17", "0a0b", "--plain"]);
    assert_eq!(stdout(&o), "0a0b\n", "round-robin by default: {}", stderr(&o));
    assert_one_line_error(&iproto(&["call", &list, "17", "--balance", "ketama"]), "add --key KEY");
    assert_one_line_error(&iproto(&["call", &format!("{},nowhere", a.addr), "17"]), "has no port");
    let o = iproto(&["call", &list, "17", "--balance", "random"]);
    assert!(!o.status.success() && stderr(&o).contains("unknown balancing mode"), "{}", stderr(&o));
}

#[test]
fn ping_over_a_list_pings_each_server() {
    let (a, b) = (Server::echo(), Server::echo());
    let o = iproto(&["ping", &format!("{},{}", a.addr, b.addr), "--count", "2", "--interval", "10ms"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for addr in [&a.addr, &b.addr] {
        assert_eq!(out.matches(&format!("reply from {addr}")).count(), 2, "{out}");
        assert!(out.contains(&format!("--- {addr} ping statistics ---\n2 sent, 2 received")), "{out}");
    }
}

#[test]
fn bench_over_a_list_spreads_its_calls() {
    let (a, b, c) = (Server::echo(), Server::echo(), Server::echo());
    let list = format!("{},{},{}", a.addr, b.addr, c.addr);
    for balance in ["round-robin", "ketama", "consistent", "hash-crc32"] {
        let o = iproto(&["bench", &list, "--balance", balance, "--requests", "3000", "--concurrency", "8", "--json"]);
        let r = json(&o);
        assert_eq!((r["calls"].as_u64(), r["errors"].as_u64()), (Some(3000), Some(0)), "{balance}: {r}");
        let spread = stderr(&o);
        for addr in [&a.addr, &b.addr, &c.addr] {
            let calls: u64 = spread
                .split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{addr}=")))
                .unwrap_or_else(|| panic!("{balance}: no count for {addr}: {spread}"))
                .parse()
                .unwrap();
            // Round-robin rotates exactly; keyed modes spread random keys by their placement.
            let least = if balance == "round-robin" { 999 } else { 1 };
            assert!(calls >= least, "{balance}: {addr} took {calls} of 3000 calls: {spread}");
        }
    }
}
