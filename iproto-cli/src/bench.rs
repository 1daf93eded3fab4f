//! The load generator behind `iproto bench`: callers that each keep one request in flight
//! (closed loop) or follow a fixed schedule (open loop, `--rate`), per-caller statistics merged
//! at the end, and the final report as a table or one JSON line.
//!
//! The engine is generic over [`Connection`] so that it runs against a real channel or a test
//! double. The hot loop allocates nothing beyond what the connection does, shares no lock
//! between callers and publishes progress through one cache-line-padded counter per caller.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use serde::Serialize;

/// Why one call of the benchmark failed, the key of `errors_by_kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// No reply within the request timeout.
    Timeout,
    /// A reply whose body is not the request's (echo verification).
    Mismatch,
    /// The connection was closed or is shutting down.
    Closed,
    /// The transport failed.
    Io,
    /// Anything else the connection reported.
    Other,
}

impl ErrorKind {
    const ALL: [ErrorKind; 5] =
        [ErrorKind::Timeout, ErrorKind::Mismatch, ErrorKind::Closed, ErrorKind::Io, ErrorKind::Other];

    /// Whether the connection cannot carry further calls, so the caller stops.
    pub fn is_fatal(self) -> bool {
        matches!(self, ErrorKind::Closed | ErrorKind::Io)
    }

    /// The name used in the table and the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Mismatch => "mismatch",
            ErrorKind::Closed => "closed",
            ErrorKind::Io => "io",
            ErrorKind::Other => "other",
        }
    }
}

/// One connection the callers share: sends a request and waits for its reply.
pub trait Connection: Send + Sync + 'static {
    /// Sends `body` with code `msg` and resolves to the reply body.
    fn call<'a>(&'a self, msg: u32, body: &'a [u8]) -> impl Future<Output = Result<Bytes, ErrorKind>> + Send + 'a;
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    /// Number of callers, each with one request in flight, spread over the connections.
    pub concurrency: usize,
    /// Request body size in bytes.
    pub size: usize,
    /// Stop after this long (`None`: only `requests` stops the run).
    pub duration: Option<Duration>,
    /// Stop after this many requests in total (`None`: only `duration` stops the run).
    pub requests: Option<u64>,
    /// Message code of the requests.
    pub msg: u32,
    /// Open loop at this many requests per second in total; `None` is closed loop.
    pub rate: Option<f64>,
    /// Compare every reply with its request.
    pub verify: bool,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            concurrency: 64,
            size: 32,
            duration: Some(Duration::from_secs(5)),
            requests: None,
            msg: 1,
            rate: None,
            verify: true,
            progress: false,
        }
    }
}

/// The statistics one caller gathers; merged into a [`BenchReport`] at the end.
#[derive(Debug, Clone)]
pub struct CallerStats {
    /// Latency of successful calls in microseconds (see [`latency_us`](Self::latency_us)).
    latency_us: Histogram<u64>,
    /// Latencies not in the histogram yet. A histogram's counters span kilobytes, and with
    /// hundreds of callers each one's were a cache miss on every call (12% of the client's
    /// time at 4x256); recorded in bursts they stay in cache for the burst.
    recent: Vec<u32>,
    /// Successful calls.
    pub calls: u64,
    /// Body bytes sent and received by successful calls.
    pub bytes: u64,
    /// Failed calls by kind, indexed like `ErrorKind::ALL`.
    pub errors: [u64; ErrorKind::ALL.len()],
}

impl Default for CallerStats {
    fn default() -> Self {
        // Auto-resizing: a caller only pays for the latency range it actually sees.
        CallerStats {
            latency_us: new_histogram(),
            recent: Vec::with_capacity(RECENT),
            calls: 0,
            bytes: 0,
            errors: [0; ErrorKind::ALL.len()],
        }
    }
}

/// Latencies a caller keeps before it adds them to its histogram.
const RECENT: usize = 256;

/// Adds latencies (microseconds) to `h`.
fn record_all(h: &mut Histogram<u64>, latencies_us: &[u32]) {
    for &us in latencies_us {
        // An auto-resizing histogram accepts any value.
        let _ = h.record(u64::from(us));
    }
}

fn new_histogram() -> Histogram<u64> {
    // 3 significant figures, auto-resize: `new` cannot fail for sigfig 3.
    Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant figures are valid"))
}

impl CallerStats {
    /// Records a successful call.
    #[inline]
    pub fn record_ok(&mut self, latency: Duration, bytes: u64) {
        self.calls += 1;
        self.bytes += bytes;
        self.recent.push(latency.as_micros().min(u128::from(u32::MAX)) as u32);
        if self.recent.len() == RECENT {
            record_all(&mut self.latency_us, &self.recent);
            self.recent.clear();
        }
    }

    /// Latency of successful calls in microseconds.
    pub fn latency_us(&self) -> std::borrow::Cow<'_, Histogram<u64>> {
        if self.recent.is_empty() {
            return std::borrow::Cow::Borrowed(&self.latency_us);
        }
        let mut all = self.latency_us.clone();
        record_all(&mut all, &self.recent);
        std::borrow::Cow::Owned(all)
    }

    /// Records a failed call.
    #[inline]
    pub fn record_error(&mut self, kind: ErrorKind) {
        self.errors[kind as usize] += 1;
    }

    /// Adds `other` to `self`.
    pub fn merge(&mut self, other: &CallerStats) {
        self.calls += other.calls;
        self.bytes += other.bytes;
        // Both histograms auto-resize, so adding cannot run out of range.
        let _ = self.latency_us.add(&other.latency_us);
        record_all(&mut self.latency_us, &other.recent);
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
    }
}

/// The outcome of a run: what `--json` prints and the table shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    /// The address benchmarked.
    pub target: String,
    /// Connections.
    pub conns: usize,
    /// Callers.
    pub concurrency: usize,
    /// Request body size in bytes.
    pub size: usize,
    /// Message code.
    pub msg: u32,
    /// Open-loop rate, if any.
    pub rate: Option<f64>,
    /// Wall time of the run in seconds.
    pub elapsed_secs: f64,
    /// Successful calls.
    pub calls: u64,
    /// Successful calls per second.
    pub calls_per_sec: f64,
    /// Body bytes (requests and replies) of successful calls per second, in MB (10^6).
    pub mb_per_sec: f64,
    /// Failed calls.
    pub errors: u64,
    /// Failed calls by kind (`timeout`, `mismatch`, `closed`, `io`, `other`); kinds that did
    /// not occur are left out.
    pub errors_by_kind: BTreeMap<&'static str, u64>,
    /// Median latency, microseconds.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Slowest call.
    pub max_us: u64,
    /// Mean latency.
    pub mean_us: f64,
}

impl BenchReport {
    /// Builds the report from the merged statistics.
    pub fn new(target: String, conns: usize, opts: &BenchOptions, stats: &CallerStats, elapsed: Duration) -> Self {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let h = stats.latency_us();
        let q = |q: f64| if h.is_empty() { 0 } else { h.value_at_quantile(q) };
        let errors_by_kind: BTreeMap<&'static str, u64> =
            ErrorKind::ALL.iter().zip(stats.errors).filter(|(_, n)| *n > 0).map(|(k, n)| (k.name(), n)).collect();
        BenchReport {
            target,
            conns,
            concurrency: opts.concurrency,
            size: opts.size,
            msg: opts.msg,
            rate: opts.rate,
            elapsed_secs: elapsed.as_secs_f64(),
            calls: stats.calls,
            calls_per_sec: stats.calls as f64 / secs,
            mb_per_sec: stats.bytes as f64 / secs / 1e6,
            errors: stats.errors.iter().sum(),
            errors_by_kind,
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: if h.is_empty() { 0 } else { h.max() },
            mean_us: if h.is_empty() { 0.0 } else { h.mean() },
        }
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        // A struct of numbers, strings and a string-keyed map always serializes.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The report as a human-readable table.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let mode = match self.rate {
            Some(r) => format!("open loop at {} calls/s", group(r as u64)),
            None => "closed loop".to_owned(),
        };
        let _ = writeln!(
            out,
            "target       {} ({} conns, {} callers, {}-byte bodies, msg {}, {mode})",
            self.target, self.conns, self.concurrency, self.size, self.msg
        );
        let _ = writeln!(out, "calls        {} in {:.2} s", group(self.calls), self.elapsed_secs);
        let _ = writeln!(out, "calls/s      {}", group(self.calls_per_sec.round() as u64));
        let _ = writeln!(out, "MB/s         {:.2} (request + reply bodies)", self.mb_per_sec);
        let _ = write!(out, "errors       {}", group(self.errors));
        if !self.errors_by_kind.is_empty() {
            let kinds: Vec<String> = self.errors_by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = write!(out, " ({})", kinds.join(", "));
        }
        out.push('\n');
        let _ = writeln!(
            out,
            "latency      p50 {}   p90 {}   p99 {}   p99.9 {}   max {}",
            micros(self.p50_us),
            micros(self.p90_us),
            micros(self.p99_us),
            micros(self.p999_us),
            micros(self.max_us)
        );
        out
    }
}

/// `1234567` as `1 234 567`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// A latency in microseconds, switched to ms or s when large.
fn micros(us: u64) -> String {
    match us {
        0..=9_999 => format!("{us} us"),
        10_000..=9_999_999 => format!("{:.1} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

/// The send schedule of one open-loop caller: caller `id` of `callers` at a total `rate`
/// sends its `k`-th request at `start + (id + k * callers) / rate` seconds, so the callers'
/// requests interleave evenly.
#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    first: Duration,
    interval: Duration,
    sent: u32,
}

impl Pacer {
    /// The schedule of caller `id` of `callers` sharing `rate` requests per second.
    pub fn new(start: Instant, rate: f64, id: usize, callers: usize) -> Self {
        let rate = rate.max(1e-6);
        Pacer {
            start,
            first: Duration::from_secs_f64(id as f64 / rate),
            interval: Duration::from_secs_f64(callers as f64 / rate),
            sent: 0,
        }
    }

    /// The intended send time of the next request, advancing the schedule.
    pub fn next_send(&mut self) -> Instant {
        // Schedules beyond what an Instant holds (absurdly low rates) become "far away".
        let offset = self.interval.checked_mul(self.sent).and_then(|d| d.checked_add(self.first));
        let far = || self.start.checked_add(Duration::from_secs(1 << 30)).unwrap_or(self.start);
        let at = offset.and_then(|d| self.start.checked_add(d)).unwrap_or_else(far);
        self.sent = self.sent.saturating_add(1);
        at
    }
}

/// Writes the per-call unique prefix into `body`: caller id then call counter, little-endian,
/// as much as fits. A misrouted reply then differs from its request.
#[inline]
pub fn stamp(body: &mut [u8], caller: u32, counter: u32) {
    let mut id = [0u8; 8];
    id[..4].copy_from_slice(&caller.to_le_bytes());
    id[4..].copy_from_slice(&counter.to_le_bytes());
    let n = body.len().min(8);
    body[..n].copy_from_slice(&id[..n]);
}

/// The request body template: a recognisable pattern after the 8-byte stamp.
fn template(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// A counter on its own cache line, so that callers publishing progress never contend.
#[repr(align(64))]
#[derive(Default)]
struct Progress(AtomicU64);

/// Runs the benchmark over `conns` (caller `i` uses connection `i % conns.len()`) and returns
/// the report. `target` only names the address in the report.
///
/// ```
/// use std::time::Duration;
/// use iproto_cli::bench::{run, BenchOptions, Connection, ErrorKind};
///
/// struct Echo;
/// impl Connection for Echo {
///     async fn call(&self, _msg: u32, body: &[u8]) -> Result<bytes::Bytes, ErrorKind> {
///         Ok(bytes::Bytes::copy_from_slice(body))
///     }
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let opts = BenchOptions { requests: Some(100), duration: None, concurrency: 4, ..Default::default() };
/// let report = run("echo".into(), vec![Echo], &opts).await;
/// assert_eq!((report.calls, report.errors), (100, 0));
/// # });
/// ```
pub async fn run<C: Connection>(target: String, conns: Vec<C>, opts: &BenchOptions) -> BenchReport {
    run_until(target, conns, opts, std::future::pending()).await
}

/// [`run`] that also ends early when `stop` resolves (Ctrl-C in `iproto bench`): callers
/// finish their call in flight and the report covers what was done.
pub async fn run_until<C: Connection>(
    target: String,
    conns: Vec<C>,
    opts: &BenchOptions,
    stop: impl Future<Output = ()>,
) -> BenchReport {
    let n_conns = conns.len();
    let callers = opts.concurrency.max(1);
    let conns: Vec<Arc<C>> = conns.into_iter().map(Arc::new).collect();
    let progress: Arc<[Progress]> = (0..callers).map(|_| Progress::default()).collect();
    let start = Instant::now();
    // A duration too long to represent is no deadline at all.
    let deadline = opts.duration.and_then(|d| start.checked_add(d));
    let stopped = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(callers);
    for id in 0..callers {
        let quota = opts.requests.map(|total| total / callers as u64 + u64::from((id as u64) < total % callers as u64));
        let caller = Caller {
            id: id as u32,
            conn: conns[id % n_conns.max(1)].clone(),
            msg: opts.msg,
            body: template(opts.size),
            verify: opts.verify,
            deadline,
            quota,
            pacer: opts.rate.map(|r| Pacer::new(start, r, id, callers)),
            progress: progress.clone(),
            stopped: stopped.clone(),
        };
        tasks.push(tokio::spawn(caller.run()));
    }
    let bar = opts.progress.then(|| progress_bar(opts));
    let mut total = CallerStats::default();
    let mut tasks = tasks.into_iter();
    let tick = Duration::from_millis(250);
    let mut ticker = tokio::time::interval_at((start + tick).into(), tick);
    let mut last = (start, 0u64);
    let mut pending = tasks.next();
    let mut stop = std::pin::pin!(stop);
    while let Some(task) = pending.as_mut() {
        tokio::select! {
            joined = task => {
                // A caller task never panics unless the connection does; count it as an error.
                match joined {
                    Ok(stats) => total.merge(&stats),
                    Err(_) => total.record_error(ErrorKind::Other),
                }
                pending = tasks.next();
            }
            () = &mut stop, if !stopped.load(Ordering::Relaxed) => {
                stopped.store(true, Ordering::Relaxed);
            }
            _ = ticker.tick(), if bar.is_some() => {
                if let Some(bar) = &bar {
                    let done: u64 = progress.iter().map(|p| p.0.load(Ordering::Relaxed)).sum();
                    let now = Instant::now();
                    let rate = (done - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-9);
                    last = (now, done);
                    match opts.requests {
                        Some(_) => bar.set_position(done),
                        None => bar.set_position(now.duration_since(start).as_millis() as u64),
                    }
                    bar.set_message(format!("{} calls, {} calls/s", group(done), group(rate as u64)));
                }
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    BenchReport::new(target, n_conns, opts, &total, start.elapsed())
}

fn progress_bar(opts: &BenchOptions) -> indicatif::ProgressBar {
    let (len, unit) = match (opts.requests, opts.duration) {
        (Some(n), _) => (n, "calls"),
        (None, Some(d)) => (d.as_millis() as u64, "ms"),
        (None, None) => (0, "calls"),
    };
    let bar = indicatif::ProgressBar::with_draw_target(Some(len), indicatif::ProgressDrawTarget::stderr());
    let template = format!("{{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} {unit}  {{msg}}");
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

struct Caller<C> {
    id: u32,
    conn: Arc<C>,
    msg: u32,
    body: Vec<u8>,
    verify: bool,
    deadline: Option<Instant>,
    /// Set once to end the run early; only read on the hot path.
    stopped: Arc<AtomicBool>,
    quota: Option<u64>,
    pacer: Option<Pacer>,
    progress: Arc<[Progress]>,
}

impl<C: Connection> Caller<C> {
    async fn run(mut self) -> CallerStats {
        let mut stats = CallerStats::default();
        let mut counter: u32 = 0;
        let mut done: u64 = 0;
        let mut remaining = self.quota.unwrap_or(u64::MAX);
        let bytes_per_call = 2 * self.body.len() as u64;
        // One clock read per call: the time a call ended is the next one's start.
        let mut now = Instant::now();
        while remaining > 0 {
            remaining -= 1;
            if self.deadline.is_some_and(|d| now >= d) || self.stopped.load(Ordering::Relaxed) {
                break;
            }
            // Open loop: latency counts from the intended send time, so a stalled server is
            // charged for the requests it delayed (coordinated-omission correction). When the
            // caller is ahead of schedule it sleeps; the timer's own lateness is not the
            // server's, so then latency counts from the actual send.
            let started = match self.pacer.as_mut().map(Pacer::next_send) {
                Some(at) if at > now + Duration::from_millis(1) => {
                    if self.deadline.is_some_and(|d| at >= d) {
                        break;
                    }
                    tokio::time::sleep_until(at.into()).await;
                    Instant::now()
                }
                Some(at) => at.min(now),
                None => now,
            };
            stamp(&mut self.body, self.id, counter);
            counter = counter.wrapping_add(1);
            let result = self.conn.call(self.msg, &self.body).await;
            now = Instant::now();
            match result {
                Ok(reply) if !self.verify || reply[..] == self.body[..] => {
                    stats.record_ok(now.saturating_duration_since(started), bytes_per_call);
                }
                Ok(_) => stats.record_error(ErrorKind::Mismatch),
                Err(kind) => {
                    stats.record_error(kind);
                    if kind.is_fatal() {
                        // The connection is gone for good (channels do not redial): spinning
                        // on instant failures would only burn the CPU the others need.
                        break;
                    }
                }
            }
            done += 1;
            // A plain store on the caller's own cache line: no read-modify-write.
            self.progress[self.id as usize].0.store(done, Ordering::Relaxed);
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// Echoes, but corrupts every `corrupt_every`-th reply and fails every `fail_every`-th call.
    struct Flaky {
        n: AtomicU32,
        corrupt_every: u32,
        fail_every: u32,
    }

    impl Connection for Flaky {
        async fn call(&self, _msg: u32, body: &[u8]) -> Result<Bytes, ErrorKind> {
            let n = self.n.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_multiple_of(self.fail_every) {
                return Err(ErrorKind::Timeout);
            }
            let mut reply = body.to_vec();
            if n.is_multiple_of(self.corrupt_every) {
                reply[0] ^= 1;
            }
            Ok(reply.into())
        }
    }

    fn flaky(corrupt_every: u32, fail_every: u32) -> Flaky {
        Flaky { n: AtomicU32::new(0), corrupt_every, fail_every }
    }

    #[tokio::test]
    async fn counts_calls_and_errors_by_kind() {
        let opts = BenchOptions { requests: Some(1000), duration: None, concurrency: 7, ..Default::default() };
        let r = run("t".into(), vec![flaky(10, 25), flaky(10, 25)], &opts).await;
        assert_eq!(r.calls + r.errors, 1000);
        assert!(r.errors_by_kind["mismatch"] > 0 && r.errors_by_kind["timeout"] > 0, "{r:?}");
        assert_eq!(r.errors, r.errors_by_kind.values().sum::<u64>());
        assert_eq!(r.conns, 2);
        assert!(r.p50_us <= r.p99_us && r.p99_us <= r.max_us);
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        for key in ["calls", "calls_per_sec", "errors", "p50_us", "p90_us", "p99_us", "p999_us", "max_us"] {
            assert!(json[key].is_number(), "{key} in {json}");
        }
        assert!(json["errors_by_kind"].is_object());
        assert_eq!(json["concurrency"], 7);
        assert!(r.to_table().contains("mismatch"));
    }

    /// A connection that is already closed.
    struct Closed;

    impl Connection for Closed {
        async fn call(&self, _msg: u32, _body: &[u8]) -> Result<Bytes, ErrorKind> {
            Err(ErrorKind::Closed)
        }
    }

    #[tokio::test]
    async fn callers_stop_on_a_closed_connection() {
        let opts = BenchOptions { duration: None, requests: Some(u64::MAX), concurrency: 5, ..Default::default() };
        let r = run("t".into(), vec![Closed], &opts).await;
        assert_eq!((r.calls, r.errors), (0, 5));
        assert_eq!(r.errors_by_kind.get("closed"), Some(&5));
    }

    #[tokio::test]
    async fn no_verify_ignores_mismatches() {
        let opts = BenchOptions { requests: Some(100), duration: None, verify: false, ..Default::default() };
        let r = run("t".into(), vec![flaky(2, u32::MAX)], &opts).await;
        assert_eq!((r.calls, r.errors), (100, 0));
    }

    #[tokio::test]
    async fn huge_duration_and_rate_limits_do_not_overflow() {
        let opts = BenchOptions { duration: Some(Duration::MAX), requests: Some(10), ..Default::default() };
        assert_eq!(run("t".into(), vec![flaky(u32::MAX, u32::MAX)], &opts).await.calls, 10);
        let mut p = Pacer::new(Instant::now(), 1e-300, 7, 10_000);
        assert!(p.next_send() > Instant::now());
    }

    #[tokio::test]
    async fn duration_stops_the_run() {
        let opts = BenchOptions { duration: Some(Duration::from_millis(50)), concurrency: 2, ..Default::default() };
        let r = run("t".into(), vec![flaky(u32::MAX, u32::MAX)], &opts).await;
        assert!(r.calls > 0);
        assert!(r.elapsed_secs >= 0.05, "{}", r.elapsed_secs);
    }

    #[tokio::test]
    async fn open_loop_keeps_the_rate() {
        // 200 calls at 2000/s take about 0.1 s; without pacing they would take microseconds.
        let opts = BenchOptions {
            requests: Some(200),
            duration: None,
            concurrency: 4,
            rate: Some(2000.0),
            ..Default::default()
        };
        let r = run("t".into(), vec![flaky(u32::MAX, u32::MAX)], &opts).await;
        assert_eq!(r.calls, 200);
        assert!(r.elapsed_secs >= 0.09, "{}", r.elapsed_secs);
        assert_eq!(r.rate, Some(2000.0));
    }

    /// Echoes, yielding to the runtime on each call; fires `stop` on the 100th call.
    struct StopAfter100 {
        n: AtomicU32,
        stop: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    }

    impl Connection for StopAfter100 {
        async fn call(&self, _msg: u32, body: &[u8]) -> Result<Bytes, ErrorKind> {
            tokio::task::yield_now().await;
            if self.n.fetch_add(1, Ordering::Relaxed) + 1 == 100 {
                if let Some(tx) = self.stop.lock().unwrap().take() {
                    let _ = tx.send(());
                }
            }
            Ok(Bytes::copy_from_slice(body))
        }
    }

    #[tokio::test]
    async fn stop_signal_ends_the_run_early() {
        // No duration and a request count that would take forever: only the signal ends it.
        let opts = BenchOptions { duration: None, requests: Some(u64::MAX), concurrency: 3, ..Default::default() };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let conn = StopAfter100 { n: AtomicU32::new(0), stop: std::sync::Mutex::new(Some(tx)) };
        let stop = async {
            let _ = rx.await;
        };
        let r = run_until("t".into(), vec![conn], &opts, stop).await;
        assert_eq!(r.errors, 0);
        assert!((100..1000).contains(&r.calls), "{}", r.calls);
    }

    #[test]
    fn pacer_interleaves_callers() {
        let t0 = Instant::now();
        let mut a = Pacer::new(t0, 100.0, 0, 2);
        let mut b = Pacer::new(t0, 100.0, 1, 2);
        assert_eq!(a.next_send() - t0, Duration::ZERO);
        assert_eq!(b.next_send() - t0, Duration::from_millis(10));
        assert_eq!(a.next_send() - t0, Duration::from_millis(20));
        assert_eq!(b.next_send() - t0, Duration::from_millis(30));
    }

    #[test]
    fn stamp_makes_bodies_unique() {
        let mut a = template(32);
        let mut b = template(32);
        stamp(&mut a, 1, 2);
        stamp(&mut b, 2, 1);
        assert_ne!(a, b);
        assert_eq!(&a[..8], &[1, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(&a[8..], &template(32)[8..]);
        let mut tiny = [0u8; 3];
        stamp(&mut tiny, 0x0302_0100, 9);
        assert_eq!(tiny, [0, 1, 2]);
    }

    #[test]
    fn latencies_recorded_in_bursts_all_reach_the_histogram() {
        let mut a = CallerStats::default();
        let n = 3 * RECENT as u64 + 7; // three full bursts and a partial one
        for us in 1..=n {
            a.record_ok(Duration::from_micros(us), 0);
        }
        assert_eq!(a.latency_us().len(), n, "the partial burst counts too");
        let mut total = CallerStats::default();
        total.merge(&a);
        assert_eq!(total.latency_us().len(), n);
        assert_eq!(total.latency_us().max(), n);
        assert_eq!(total.latency_us().min(), 1);
    }

    #[test]
    fn merged_percentiles_and_table() {
        let mut a = CallerStats::default();
        let mut b = CallerStats::default();
        for us in 1..=100 {
            a.record_ok(Duration::from_micros(us), 64);
        }
        b.record_ok(Duration::from_millis(20), 64);
        b.record_error(ErrorKind::Closed);
        a.merge(&b);
        let opts = BenchOptions::default();
        let r = BenchReport::new("x".into(), 1, &opts, &a, Duration::from_secs(1));
        assert_eq!((r.calls, r.errors), (101, 1));
        assert_eq!(r.p50_us, 51);
        assert_eq!(r.max_us, 20_015); // 3 significant figures: 16 us buckets around 20 ms
        assert_eq!(r.errors_by_kind.get("closed"), Some(&1));
        let table = r.to_table();
        assert!(table.contains("calls        101 in 1.00 s"), "{table}");
        assert!(table.contains("errors       1 (closed 1)"), "{table}");
        assert!(table.contains("p50 51 us"), "{table}");
    }

    #[test]
    fn grouping_and_units() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1 000");
        assert_eq!(group(1234567), "1 234 567");
        assert_eq!(micros(97), "97 us");
        assert_eq!(micros(12_345), "12.3 ms");
        assert_eq!(micros(12_345_678), "12.35 s");
    }
}
