//! Pings and the idle timeout: one timer task per channel that needs either.

use std::sync::Arc;

use tokio::time::Instant;

use super::outbox::Wait;
use super::shared::Shared;
use super::stats::Counters;
use crate::wire::MSG_PING;
use crate::Error;

/// Runs until the channel closes or one of the timers kills it.
pub(crate) async fn run(shared: Arc<Shared>) {
    let ping = shared.config.effective_ping();
    let idle = shared.config.idle_timeout;
    let mut next_ping = ping.map(|p| Instant::now() + p);
    loop {
        let idle_at = idle.map(|d| shared.last_read() + d);
        let wake = match (next_ping, idle_at) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return,
        };
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
            _ = tokio::time::sleep_until(wake) => {}
        }
        let now = Instant::now();
        if let Some(d) = idle {
            if now >= shared.last_read() + d {
                shared.fail(Error::Idle(d));
                return;
            }
        }
        if let (Some(interval), Some(at)) = (ping, next_ping) {
            if now >= at {
                if let Err(e) = tick(&shared, interval, now).await {
                    shared.fail(e);
                    return;
                }
                next_ping = Some(Instant::now() + interval);
            }
        }
    }
}

/// One ping tick: send a ping if none is outstanding; fail if the outstanding one is
/// older than twice the interval; otherwise wait (at most one ping in flight).
async fn tick(shared: &Shared, interval: std::time::Duration, now: Instant) -> Result<(), Error> {
    if shared.is_stopped() {
        return Ok(());
    }
    let outstanding = {
        let mut sent = crate::lock::lock(&shared.ping_sent);
        let outstanding = *sent;
        if outstanding.is_none() {
            *sent = Some(now);
        }
        outstanding
    };
    match outstanding {
        None => {
            Counters::inc(&shared.stats.callers.notifications);
            let timeout = shared.config.notify_timeout;
            let wait = Wait::Until(Instant::now() + timeout, timeout);
            if let Err(e) = shared.outbox.enqueue(MSG_PING, 0, &[], wait).await {
                tracing::debug!(error = %e, "could not send a ping");
            }
            Ok(())
        }
        Some(at) if now.duration_since(at) > interval * 2 => Err(Error::PingMissed(now.duration_since(at))),
        Some(_) => Ok(()),
    }
}
