//! Running the subcommands: the thin network layer between the parsed [`Cli`](crate::cli::Cli) and the
//! `iproto` runtime. Command output goes to stdout, logs to stderr through `tracing`.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use iproto::{CallOptions, Channel, ChannelConfig};

use crate::bench::{self, ErrorKind};
use crate::cli::{read_input, BenchArgs, CallArgs, Command, DecodeArgs, PingArgs};
use crate::error::CliError;
use crate::hexdump::{dump, parse_hex};
use crate::serve;
use crate::spec::UnpackSpec;
use crate::target::{self, ClusterBench, Target};

/// Runs one subcommand to completion.
pub async fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Call(args) => call(args).await,
        Command::Ping(args) => ping(args).await,
        Command::Serve(args) => serve::serve(args).await,
        Command::Decode(args) => decode(args),
        Command::Bench(args) => bench(args).await,
    }
}

/// Connects within `timeout`, with no keepalive pings (the CLI's connections are short-lived
/// or measure something pings would disturb).
pub async fn connect(addr: &str, timeout: Duration) -> Result<Channel, CliError> {
    let config = ChannelConfig { request_timeout: timeout, ping_interval: None, ..ChannelConfig::client() };
    match tokio::time::timeout(timeout, Channel::connect(addr, config)).await {
        Ok(Ok(ch)) => Ok(ch),
        Ok(Err(source)) => Err(CliError::Connect { addr: addr.to_owned(), source }),
        Err(_) => Err(CliError::ConnectTimeout { addr: addr.to_owned(), timeout }),
    }
}

/// Writes command output to stdout and flushes it (so `listening on` reaches a pipe at once).
pub(crate) fn out(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).map_err(CliError::Output)
}

async fn call(args: CallArgs) -> Result<(), CliError> {
    let body = args.body_source()?.load()?;
    // The user typed the code, so reserved codes (pings, 0xff01) are allowed.
    let opts = CallOptions { timeout: Some(args.timeout), allow_reserved: true, ..Default::default() };
    let result = match Target::parse(&args.addr)? {
        Target::One(addr) => {
            let ch = connect(&addr, args.timeout).await?;
            let result = ch.call_with(args.msg, &body, opts).await;
            ch.close();
            result
        }
        Target::Many(_) if args.balance.is_keyed() && args.key.is_none() => {
            return Err(CliError::Usage(format!(
                "--balance {} places calls by key: add --key KEY",
                args.balance.name()
            )));
        }
        Target::Many(list) => {
            let cluster = target::connect(list, args.balance.clone(), 1, args.timeout).await?;
            let result = target::call(&cluster, args.key.as_deref(), args.msg, &body, opts).await;
            cluster.close().await;
            result
        }
    };
    let reply = result.map_err(|source| CliError::Call { addr: args.addr.clone(), source })?;
    tracing::info!(msg = args.msg, len = reply.len(), "reply");
    out(&render_reply(&reply, args.unpack.as_ref(), args.plain)?)
}

/// The text `iproto call` prints for a reply body.
pub fn render_reply(reply: &Bytes, unpack: Option<&UnpackSpec>, plain: bool) -> Result<String, CliError> {
    Ok(match unpack {
        Some(spec) => render_decoded(spec, reply)?,
        None if plain => format!("{}\n", hex::encode(reply)),
        None => dump(reply),
    })
}

/// One `word value` line per field, then `rest HEX` if bytes are left over.
fn render_decoded(spec: &UnpackSpec, data: &[u8]) -> Result<String, CliError> {
    let decoded = spec.decode(data)?;
    let mut text = String::new();
    for v in &decoded.values {
        text.push_str(&v.to_string());
        text.push('\n');
    }
    if !decoded.rest.is_empty() {
        text.push_str(&format!("rest {}\n", hex::encode(&decoded.rest)));
    }
    Ok(text)
}

fn decode(args: DecodeArgs) -> Result<(), CliError> {
    let text = match args.hex.as_slice() {
        [dash] if dash == "-" => String::from_utf8_lossy(&read_input("-".as_ref())?).into_owned(),
        parts => parts.join(" "),
    };
    out(&render_decoded(&args.unpack, &parse_hex(&text)?)?)
}

async fn ping(args: PingArgs) -> Result<(), CliError> {
    let addrs = Target::parse(&args.addr)?.addrs();
    let mut channels = Vec::with_capacity(addrs.len());
    for addr in &addrs {
        channels.push(connect(addr, args.timeout).await?);
    }
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    let mut ticker = tokio::time::interval(args.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut sent, mut rtts) = (0u64, vec![Vec::new(); addrs.len()]);
    while args.count.is_none_or(|n| sent < n) {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut interrupted => break,
        }
        sent += 1;
        // Every server of a list at once; one line each, in list order.
        let pings = futures_util::future::join_all(channels.iter().map(|ch| ch.ping()));
        let results = tokio::select! {
            r = pings => r,
            _ = &mut interrupted => break,
        };
        let mut lines = String::new();
        for ((addr, result), rtts) in addrs.iter().zip(results).zip(&mut rtts) {
            match result {
                Ok(rtt) => {
                    rtts.push(rtt);
                    lines.push_str(&format!("reply from {addr}: seq={sent} time={:.3} ms\n", ms(rtt)));
                }
                Err(e) => lines.push_str(&format!("no reply from {addr}: seq={sent}: {e}\n")),
            }
        }
        out(&lines)?;
    }
    for ch in &channels {
        ch.close();
    }
    for (addr, rtts) in addrs.iter().zip(&rtts) {
        out(&ping_summary(addr, sent, rtts))?;
    }
    if let Some((addr, _)) = addrs.iter().zip(&rtts).find(|(_, rtts)| rtts.is_empty()) {
        return Err(CliError::NoPingReply { addr: addr.clone(), sent });
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The closing lines of `iproto ping`, as `ping` prints them.
pub fn ping_summary(addr: &str, sent: u64, rtts: &[Duration]) -> String {
    let received = rtts.len() as u64;
    let loss = if sent == 0 { 0.0 } else { 100.0 * (sent - received) as f64 / sent as f64 };
    let mut text = format!("--- {addr} ping statistics ---\n{sent} sent, {received} received, {loss:.0}% loss\n");
    if let (Some(min), Some(max)) = (rtts.iter().min(), rtts.iter().max()) {
        let avg = rtts.iter().sum::<Duration>() / rtts.len() as u32;
        text.push_str(&format!("rtt min/avg/max = {:.3}/{:.3}/{:.3} ms\n", ms(*min), ms(avg), ms(*max)));
    }
    text
}

impl bench::Connection for Channel {
    fn call<'a>(&'a self, msg: u32, body: &'a [u8]) -> impl Future<Output = Result<Bytes, ErrorKind>> + Send + 'a {
        // The channel's own future, mapped: no second state machine copying its arguments.
        Channel::call(self, msg, body).map(|r| r.map_err(|e| error_kind(&e)))
    }
}

/// The bench error kind of a runtime error.
pub fn error_kind(e: &iproto::Error) -> ErrorKind {
    use iproto::Error as E;
    match e {
        E::Timeout { .. } => ErrorKind::Timeout,
        E::Stopped
        | E::Hijacked
        | E::Dropped(_)
        | E::PeerClosed { .. }
        | E::PingMissed(_)
        | E::Idle(_)
        | E::Frame(iproto::FrameError::Truncated { .. })
        | E::Frame(iproto::FrameError::TooLarge { .. }) => ErrorKind::Closed,
        E::Io(_) | E::WriteTimeout(_) | E::Connect { .. } => ErrorKind::Io,
        _ => ErrorKind::Other,
    }
}

async fn bench(args: BenchArgs) -> Result<(), CliError> {
    if args.msg >= iproto::wire::MSG_RESERVED_MIN {
        return Err(CliError::Usage(format!(
            "--msg {:#06x} is a reserved control code (>= 0xff00); use `iproto ping` for pings",
            args.msg
        )));
    }
    let opts = args.options(std::io::stderr().is_terminal());
    // Keeps the embedded server running until the report is done.
    let (target, embedded) = match &args.addr {
        Some(addr) => (addr.clone(), None),
        None => {
            let server = serve::EmbeddedEcho::start().await?;
            (server.addr().to_owned(), Some(server))
        }
    };
    let name = match &embedded {
        Some(_) => format!("embedded echo server at {target}"),
        None => target.clone(),
    };
    // Ctrl-C ends the run early and still prints the report.
    let interrupted = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let report = match Target::parse(&target)? {
        Target::One(addr) => {
            let mut conns = Vec::with_capacity(args.conns as usize);
            for _ in 0..args.conns {
                conns.push(connect(&addr, args.timeout).await?);
            }
            bench::run_until(name, conns, &opts, interrupted).await
        }
        Target::Many(list) => {
            // `--conns` connections to each server; callers share the one cluster.
            let name = format!("{name} ({})", args.balance.name());
            let cluster = target::connect(list, args.balance.clone(), args.conns as usize, args.timeout).await?;
            let conns = (0..args.conns).map(|_| ClusterBench::new(cluster.clone())).collect();
            let report = bench::run_until(name, conns, &opts, interrupted).await;
            let spread: Vec<String> =
                cluster.stats().servers.iter().map(|s| format!("{}={}", s.server.addr, s.calls)).collect();
            eprintln!("calls per server: {}", spread.join(" "));
            cluster.close().await;
            report
        }
    };
    if let Some(server) = embedded {
        server.stop().await;
    }
    out(&if args.json { format!("{}\n", report.to_json()) } else { report.to_table() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse_unpack_spec;

    #[test]
    fn reply_rendering() {
        let reply = Bytes::from_static(&[7, 0, 0, 0, 1, 2]);
        assert_eq!(render_reply(&reply, None, true).unwrap(), "070000000102\n");
        assert!(render_reply(&reply, None, false).unwrap().starts_with("00000000  07 00 00 00 01 02"));
        let spec = parse_unpack_spec("u32").unwrap();
        assert_eq!(render_reply(&reply, Some(&spec), false).unwrap(), "u32 7\nrest 0102\n");
        let spec = parse_unpack_spec("u64").unwrap();
        assert!(render_reply(&reply, Some(&spec), false).is_err());
    }

    #[test]
    fn ping_summary_lines() {
        let s = ping_summary("h:1", 4, &[Duration::from_millis(1), Duration::from_millis(3)]);
        assert!(s.contains("4 sent, 2 received, 50% loss"), "{s}");
        assert!(s.contains("rtt min/avg/max = 1.000/2.000/3.000 ms"), "{s}");
        assert!(!ping_summary("h:1", 1, &[]).contains("rtt"));
    }

    #[test]
    fn runtime_errors_map_to_kinds() {
        assert_eq!(
            error_kind(&iproto::Error::Timeout {
                msg: 1,
                after: std::time::Duration::from_secs(1),
                stage: iproto::TimeoutStage::Reply
            }),
            ErrorKind::Timeout
        );
        assert_eq!(error_kind(&iproto::Error::Stopped), ErrorKind::Closed);
        assert_eq!(error_kind(&iproto::Error::from(std::io::Error::other("x"))), ErrorKind::Io);
        assert_eq!(error_kind(&iproto::Error::ReservedCode(0xff00)), ErrorKind::Other);
    }
}
