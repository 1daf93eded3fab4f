//! The command line: clap definitions of `iproto` and its subcommands, with help and
//! examples, plus the small parsers they use (message codes, durations, request bodies).

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use iproto::cluster::Balance;

use crate::error::CliError;
use crate::hexdump::parse_hex;
use crate::spec::{parse_pack_spec, parse_unpack_spec, UnpackSpec};
use crate::target::parse_balance;

/// Talk to iproto services: call, ping, serve, decode and bench.
///
/// Addresses are `host:port` for TCP or `unix:/path/to.sock` for Unix sockets; `call`, `ping`
/// and `bench` also take a cluster in MR::IProto's form `HOST:PORT[:WEIGHT],...`.
#[derive(Debug, Parser)]
#[command(name = "iproto", version, propagate_version = true, after_help = MAIN_EXAMPLES)]
pub struct Cli {
    /// More logging on stderr: -v logs each packet, -vv everything.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

const MAIN_EXAMPLES: &str = "\
Examples:
  iproto serve 127.0.0.1:3301 --echo
  iproto call 127.0.0.1:3301 17 --pack 'u32:7 str:\"hello\"' --unpack 'u32 str'
  iproto ping 127.0.0.1:3301 --count 3
  iproto decode --unpack 'u32 ber' 07000000822c
  iproto bench --duration 5 --conns 4 --concurrency 256";

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send one request and print the reply.
    #[command(after_help = CALL_EXAMPLES)]
    Call(CallArgs),
    /// Measure round-trip times of 0xff00 pings.
    #[command(after_help = PING_EXAMPLES)]
    Ping(PingArgs),
    /// Run a server for trying things out: log requests, or echo them with --echo.
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
    /// Decode a payload offline with an --unpack spec.
    #[command(after_help = DECODE_EXAMPLES)]
    Decode(DecodeArgs),
    /// Load-test a server (or an embedded echo server when no address is given).
    #[command(after_help = BENCH_EXAMPLES)]
    Bench(BenchArgs),
}

/// The spec language summary shown in the help of `call` and `decode`.
macro_rules! spec_help {
    () => {
        "

Spec words (fixed-width little-endian unless ber):
  u8 u16 u32 u64 i8 i16 i32 i64   integers; values in decimal or 0x hex
  ber                             BER (Perl pack 'w') u64
  str                             u32 length + bytes; value \"quoted\" with \\\" \\\\ \\n \\t \\xNN escapes
  berstr                          BER length + bytes
  bytes                           u32 length + bytes; value in hex
  raw                             bytes without length; value in hex (unpack: the rest, or raw:N)"
    };
}

const CALL_EXAMPLES: &str = concat!(
    "\
Examples:
  iproto call 127.0.0.1:3301 17 0a0b0c                 body in hex, reply as a hex dump
  iproto call 127.0.0.1:3301 17 --hex '0a 0b 0c'
  iproto call unix:/tmp/app.sock 17 --file request.bin
  iproto call 127.0.0.1:3301 0x11 --pack 'u32:7 ber:300 str:\"hello\" bytes:0a0b'
  iproto call 127.0.0.1:3301 17 --pack 'u32:7' --unpack 'u32 str' --timeout 500ms
  iproto call h1:3301,h2:3301:2 17 0a --balance ketama --key user:42   the key's server",
    spec_help!()
);

const PING_EXAMPLES: &str = "\
Examples:
  iproto ping 127.0.0.1:3301                 until Ctrl-C
  iproto ping 127.0.0.1:3301 --count 3 --interval 200ms
  iproto ping unix:/tmp/app.sock -c 1 --timeout 1s
  iproto ping h1:3301,h2:3301,h3:3301 -c 3     each server of a list";

const SERVE_EXAMPLES: &str = "\
Examples:
  iproto serve 127.0.0.1:3301 --echo         echo every request
  iproto serve 127.0.0.1:0 --echo            pick a free port (printed on the first line)
  iproto serve unix:/tmp/app.sock -v         log every packet, reply to none
  iproto serve 0.0.0.0:3301 --echo --max-conns 100 --idle-timeout 30s --size-limit 1048576

The first line on stdout is always `listening on HOST:PORT`. Ctrl-C shuts down gracefully.";

const DECODE_EXAMPLES: &str = concat!(
    "\
Examples:
  iproto decode --unpack 'u32 ber str' 07000000822c0200000068 69
  echo 07000000 | iproto decode --unpack u32 -

Prints one `word value` line per spec word, then `rest HEX` if bytes are left over.",
    spec_help!()
);

const BENCH_EXAMPLES: &str = "\
Examples:
  iproto bench                                       embedded echo server, 5 s, 64 callers
  iproto bench 127.0.0.1:3301 --conns 4 --concurrency 256 --size 100
  iproto bench 127.0.0.1:3301 --requests 100000 --json
  iproto bench 127.0.0.1:3301 --rate 50000 --duration 30    open loop, corrected latency
  iproto bench h1:3301,h2:3301,h3:3301 --balance ketama     spread over a list (random keys)

Closed loop by default: each caller keeps one request in flight. With --rate the callers
send on a fixed schedule and latency counts from the intended send time, so a stalled
server is charged for the requests it delayed (coordinated-omission correction).
Every reply is compared with its request unless --no-verify (the server must echo).";

/// Arguments of `iproto call`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("source").args(["hex", "file", "pack"]).multiple(false))]
pub struct CallArgs {
    /// Server address (host:port or unix:/path) or a list `HOST:PORT[:WEIGHT],...`
    pub addr: String,
    /// Message code, decimal or 0x hex; reserved codes (>= 0xff00) are sent as typed.
    #[arg(value_parser = parse_msg)]
    pub msg: u32,
    /// Request body in hex (or a path with --file).
    pub body: Option<String>,
    /// The body in hex: --hex HEX, or BODY is hex (the default).
    #[arg(long, value_name = "HEX")]
    pub hex: Option<Option<String>>,
    /// The body from a file (`-` for stdin): --file PATH, or BODY is a path.
    #[arg(long, value_name = "PATH")]
    pub file: Option<Option<PathBuf>>,
    /// The body packed from a spec such as 'u32:7 ber:300 str:"hello" bytes:0a0b'.
    #[arg(long, value_name = "SPEC")]
    pub pack: Option<String>,
    /// Decode the reply with a spec such as 'u32 str' instead of dumping it.
    #[arg(long, value_name = "SPEC", value_parser = parse_unpack_arg, conflicts_with = "plain")]
    pub unpack: Option<UnpackSpec>,
    /// Print the reply as one line of plain hex instead of a dump.
    #[arg(long)]
    pub plain: bool,
    /// How long to wait for the connection and the reply (e.g. 5s, 500ms, 1.5).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How a list picks its server: round-robin, hash-crc32, ketama (MR::IProto's) or consistent.
    #[arg(long, default_value = "round-robin", value_parser = parse_balance)]
    pub balance: Balance,
    /// The key that places the call on a list's server (the keyed modes need one).
    #[arg(long)]
    pub key: Option<String>,
}

/// Where a request body comes from, after resolving BODY, --hex, --file and --pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodySource {
    /// Hex text.
    Hex(String),
    /// A file, `-` for stdin.
    File(PathBuf),
    /// A pack spec.
    Pack(String),
    /// No body.
    Empty,
}

impl CallArgs {
    /// Resolves BODY and the --hex/--file/--pack options into one source.
    pub fn body_source(&self) -> Result<BodySource, CliError> {
        let body = self.body.clone();
        let needs_body = |what: &str| CliError::Usage(format!("{what} without a value needs the BODY argument"));
        let extra = |what: &str| CliError::Usage(format!("BODY given twice: as an argument and with {what}"));
        Ok(match (&self.hex, &self.file, &self.pack) {
            (_, _, Some(spec)) if body.is_none() => BodySource::Pack(spec.clone()),
            (_, _, Some(_)) => return Err(extra("--pack")),
            (_, Some(Some(path)), _) if body.is_none() => BodySource::File(path.clone()),
            (_, Some(Some(_)), _) => return Err(extra("--file")),
            (_, Some(None), _) => BodySource::File(body.ok_or_else(|| needs_body("--file"))?.into()),
            (Some(Some(hex)), _, _) if body.is_none() => BodySource::Hex(hex.clone()),
            (Some(Some(_)), _, _) => return Err(extra("--hex")),
            (Some(None), _, _) => BodySource::Hex(body.ok_or_else(|| needs_body("--hex"))?),
            (None, None, None) => body.map_or(BodySource::Empty, BodySource::Hex),
        })
    }
}

impl BodySource {
    /// Produces the body bytes (reads the file, parses the hex, packs the spec).
    pub fn load(&self) -> Result<Vec<u8>, CliError> {
        match self {
            BodySource::Hex(text) => Ok(parse_hex(text)?),
            BodySource::Pack(spec) => Ok(parse_pack_spec(spec)?.encode()),
            BodySource::Empty => Ok(Vec::new()),
            BodySource::File(path) => read_input(path),
        }
    }
}

/// Reads a file, or stdin for `-`.
pub fn read_input(path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    let read = if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map(|_| buf)
    } else {
        std::fs::read(path)
    };
    read.map_err(|source| CliError::ReadFile { path: path.display().to_string(), source })
}

/// Arguments of `iproto ping`.
#[derive(Debug, Args)]
pub struct PingArgs {
    /// Server address (host:port or unix:/path) or a list `HOST:PORT[:WEIGHT],...` (each pinged).
    pub addr: String,
    /// Stop after this many pings (default: until Ctrl-C).
    #[arg(short, long)]
    pub count: Option<u64>,
    /// Time between pings.
    #[arg(short, long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// How long to wait for the connection and each reply.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Arguments of `iproto serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on: host:port (port 0 picks a free one) or unix:/path.
    pub addr: String,
    /// Echo every request; without it requests are logged and get no reply.
    #[arg(long)]
    pub echo: bool,
    /// Refuse connections beyond this many at once.
    #[arg(long, value_name = "N")]
    pub max_conns: Option<usize>,
    /// Close connections silent for this long (e.g. 30s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// Largest request body accepted, in bytes; a larger one closes the connection.
    #[arg(long, value_name = "BYTES", default_value_t = iproto::wire::DEFAULT_SIZE_LIMIT)]
    pub size_limit: u32,
    /// Drop a connection whose peer does not take our replies for this long (e.g. 2s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    pub write_timeout: Duration,
    /// Replies that may wait for the writer per connection before handlers wait.
    #[arg(long, value_name = "PACKETS", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub write_queue: u32,
}

/// Arguments of `iproto decode`.
#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// The spec to decode with, such as 'u32 ber str'.
    #[arg(long, value_name = "SPEC", value_parser = parse_unpack_arg)]
    pub unpack: UnpackSpec,
    /// The payload in hex (spaces allowed, several arguments are joined); `-` reads stdin.
    #[arg(required = true, num_args = 1..)]
    pub hex: Vec<String>,
}

/// Arguments of `iproto bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Server address (host:port or unix:/path) or a list `HOST:PORT[:WEIGHT],...`; none starts
    /// an embedded echo server.
    pub addr: Option<String>,
    /// How calls spread over a list: round-robin, or random keys placed by hash-crc32, ketama
    /// or consistent.
    #[arg(long, default_value = "round-robin", value_parser = parse_balance)]
    pub balance: Balance,
    /// Connections to open (1 to 10 000; per server of a list).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub conns: u32,
    /// Callers, each keeping one request in flight, spread over the connections (1 to 100 000).
    #[arg(short, long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,
    /// Request body size in bytes.
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// How long to run (default 5s, or unlimited with --requests).
    #[arg(short, long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many requests in total.
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,
    /// Message code of the requests.
    #[arg(long, default_value = "1", value_parser = parse_msg)]
    pub msg: u32,
    /// Open loop: send this many requests per second in total.
    #[arg(long, value_name = "RPS", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Do not compare replies with requests (for servers that do not echo).
    #[arg(long)]
    pub no_verify: bool,
    /// Print the result as one line of JSON.
    #[arg(long)]
    pub json: bool,
    /// Request timeout.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

impl BenchArgs {
    /// The engine options; the progress bar is shown when `progress` is true.
    pub fn options(&self, progress: bool) -> crate::bench::BenchOptions {
        let duration = match (self.duration, self.requests) {
            (Some(d), _) => Some(d),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(5)),
        };
        crate::bench::BenchOptions {
            concurrency: self.concurrency as usize,
            size: self.size,
            duration,
            requests: self.requests,
            msg: self.msg,
            rate: self.rate,
            verify: !self.no_verify,
            progress,
        }
    }
}

/// Parses a message code: decimal or `0x` hex, fitting u32.
pub fn parse_msg(text: &str) -> Result<u32, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|e| format!("{text:?} is not a message code (u32, decimal or 0x hex): {e}"))
}

/// Parses a duration: a bare number of seconds (`1.5`) or humantime's forms (`500ms`, `5s`,
/// `2m`, `1m30s`, `1h`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if let Ok(seconds) = t.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?} is not a duration: {e}"));
    }
    humantime::parse_duration(t).map_err(|e| format!("{text:?} is not a duration (e.g. 5s, 500ms, 1.5): {e}"))
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.001 => Ok(r),
        _ => Err(format!("{text:?} is not a rate in requests per second (at least 0.001)")),
    }
}

fn parse_unpack_arg(text: &str) -> Result<UnpackSpec, String> {
    parse_unpack_spec(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("iproto").chain(args.iter().copied()))
    }

    fn call(args: &[&str]) -> CallArgs {
        let args: Vec<&str> = std::iter::once("call").chain(args.iter().copied()).collect();
        match parse(&args).unwrap().command {
            Command::Call(c) => c,
            other => panic!("not a call: {other:?}"),
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_has_examples() {
        let mut cmd = Cli::command();
        for sub in cmd.get_subcommands_mut() {
            let help = sub.render_long_help().to_string();
            assert!(help.contains("Examples:"), "{} lacks examples", sub.get_name());
        }
    }

    #[test]
    fn body_sources() {
        let src = |args: &[&str]| call(args).body_source();
        assert_eq!(src(&["a:1", "1"]).unwrap(), BodySource::Empty);
        assert_eq!(src(&["a:1", "1", "0a"]).unwrap(), BodySource::Hex("0a".into()));
        assert_eq!(src(&["a:1", "1", "0a", "--hex"]).unwrap(), BodySource::Hex("0a".into()));
        assert_eq!(src(&["a:1", "1", "--hex", "0b"]).unwrap(), BodySource::Hex("0b".into()));
        assert_eq!(src(&["a:1", "1", "f.bin", "--file"]).unwrap(), BodySource::File("f.bin".into()));
        assert_eq!(src(&["a:1", "1", "--file", "g.bin"]).unwrap(), BodySource::File("g.bin".into()));
        assert_eq!(src(&["a:1", "1", "--pack", "u8:1"]).unwrap(), BodySource::Pack("u8:1".into()));
        assert!(src(&["a:1", "1", "0a", "--pack", "u8:1"]).is_err());
        assert!(src(&["a:1", "1", "--file"]).is_err());
        assert!(parse(&["call", "a:1", "1", "--hex", "0a", "--pack", "u8:1"]).is_err());
        assert_eq!(BodySource::Pack("u16:258".into()).load().unwrap(), [2, 1]);
        assert!(BodySource::Hex("zz".into()).load().is_err());
    }

    #[test]
    fn msg_codes_and_durations() {
        assert_eq!(call(&["a:1", "0xff00"]).msg, 0xff00);
        assert_eq!(call(&["a:1", "17"]).msg, 17);
        assert!(parse(&["call", "a:1", "nope"]).is_err());
        assert!(parse(&["call", "a:1", "4294967296"]).is_err());
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5h").unwrap(), Duration::from_secs(5 * 3600));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn bench_defaults() {
        let Command::Bench(b) = parse(&["bench"]).unwrap().command else { panic!("not bench") };
        let o = b.options(false);
        assert_eq!((b.addr, b.conns, o.concurrency, o.size), (None, 1, 64, 32));
        assert_eq!(o.duration, Some(Duration::from_secs(5)));
        assert!(o.verify && o.rate.is_none());
        let Command::Bench(b) = parse(&["bench", "x:1", "-n", "10", "--no-verify", "--rate", "100"]).unwrap().command
        else {
            panic!("not bench")
        };
        let o = b.options(false);
        assert_eq!((o.duration, o.requests, o.verify, o.rate), (None, Some(10), false, Some(100.0)));
        assert!(parse(&["bench", "--conns", "0"]).is_err());
        assert!(parse(&["bench", "--rate", "0"]).is_err());
        assert!(parse(&["bench", "--rate", "1e-300"]).is_err());
        assert!(parse(&["bench", "--concurrency", "100001"]).is_err());
        let Command::Bench(b) = parse(&["bench", "a:1,b:2", "--balance", "ketama"]).unwrap().command else {
            panic!("not bench")
        };
        assert_eq!(b.balance.name(), "ketama");
        assert!(parse(&["bench", "--balance", "nope"]).is_err());
    }

    #[test]
    fn call_takes_a_balance_and_a_key() {
        let c = call(&["a:1,b:2", "1", "--balance", "hash-crc32", "--key", "user:1"]);
        assert_eq!((c.balance.name(), c.key.as_deref()), ("hash-crc32", Some("user:1")));
        assert_eq!(call(&["a:1", "1"]).balance.name(), "round-robin");
    }

    #[test]
    fn decode_and_unpack_specs_are_checked_by_clap() {
        assert!(parse(&["decode", "--unpack", "u32 nope", "00"]).is_err());
        assert!(parse(&["decode", "--unpack", "u32"]).is_err());
        let Command::Decode(d) = parse(&["decode", "--unpack", "u32", "07 00", "0000"]).unwrap().command else {
            panic!("not decode")
        };
        assert_eq!(d.hex, ["07 00", "0000"]);
    }
}
