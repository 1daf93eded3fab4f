//! `iproto bench --rate` (the open loop) counts latency from each request's intended send
//! time, so a server that stalls is charged for every request it held up (the correction for
//! coordinated omission), not only for the one it was answering.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use iproto_cli::bench::{run, BenchOptions, Connection, ErrorKind};

/// Echoes at once, except that its first call stalls for `stall`.
struct StallsOnce {
    calls: AtomicU32,
    stall: Duration,
}

impl Connection for StallsOnce {
    async fn call(&self, _msg: u32, body: &[u8]) -> Result<Bytes, ErrorKind> {
        if self.calls.fetch_add(1, Ordering::Relaxed) == 0 {
            tokio::time::sleep(self.stall).await;
        }
        Ok(Bytes::copy_from_slice(body))
    }
}

fn stalls_once() -> StallsOnce {
    StallsOnce { calls: AtomicU32::new(0), stall: Duration::from_millis(200) }
}

// One caller at 1 000 requests/s; the first reply takes 200 ms. Requests 2..200 were due while
// it stalled: counted from their intended send times they waited about 199, 198, ... 1 ms, so
// the median of 300 requests is some 50 ms. Counted from the actual send, as a closed loop
// does, only one request would be slow and the median would be microseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_latency_counts_from_the_intended_send_time() {
    let opts = BenchOptions {
        concurrency: 1,
        requests: Some(300),
        duration: None,
        rate: Some(1000.0),
        ..BenchOptions::default()
    };
    let report = tokio::time::timeout(Duration::from_secs(30), run("stalls".into(), vec![stalls_once()], &opts))
        .await
        .expect("the bench run did not end within 30 s");
    assert_eq!((report.calls, report.errors), (300, 0), "{report:?}");
    assert!(report.max_us >= 200_000, "the stalled call itself: {report:?}");
    // About 50 ms if corrected; a loaded machine only makes it larger.
    assert!(report.p50_us >= 25_000, "the requests held up by the stall are not charged: {report:?}");
    assert!(report.p90_us >= report.p50_us, "{report:?}");
}

// The closed loop, for contrast, sends each request when the previous reply came: the stall
// delays one request, the median stays far below the open loop's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_latency_counts_from_the_actual_send() {
    let opts = BenchOptions { concurrency: 1, requests: Some(300), duration: None, ..BenchOptions::default() };
    let report = tokio::time::timeout(Duration::from_secs(30), run("stalls".into(), vec![stalls_once()], &opts))
        .await
        .expect("the bench run did not end within 30 s");
    assert_eq!((report.calls, report.errors), (300, 0), "{report:?}");
    assert!(report.max_us >= 200_000, "the stalled call itself: {report:?}");
    // Echoes that return at once: anything near the open loop's 50 ms would be a scheduler
    // stall of the test machine lasting for half of the run.
    assert!(report.p50_us < 25_000, "closed-loop median {} us: {report:?}", report.p50_us);
}
