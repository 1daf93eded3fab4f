//! The pool's rate limit: a token bucket (governor) that polices or shapes calls.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use tokio::time::Instant;

use super::budget::Budget;
use super::{Inner, RateLimit};
use crate::error::{PoolError, TimeoutStage};
use crate::Error;

pub(super) enum Limiter {
    /// A burst with no rate: every call is rejected (go-iproto's behaviour).
    Deny,
    Bucket {
        bucket: DefaultDirectRateLimiter,
        wait: bool,
    },
}

impl Limiter {
    /// The limiter for `rate`; `None` when it is off (burst 0 or a rate too small to express).
    pub(super) fn new(r: RateLimit) -> Option<Limiter> {
        let burst = NonZeroU32::new(r.burst)?;
        if r.per_second.is_nan() || r.per_second <= 0.0 {
            return Some(Limiter::Deny);
        }
        let period = Duration::try_from_secs_f64(1.0 / r.per_second).ok()?;
        let quota = Quota::with_period(period)?.allow_burst(burst);
        Some(Limiter::Bucket { bucket: DefaultDirectRateLimiter::direct(quota), wait: r.wait })
    }
}

impl Inner {
    /// Takes a rate-limit token; shaping waits only while the call's deadline allows, and
    /// fails at once with a rate-limit timeout when the token would come too late.
    pub(super) async fn admit(&self, budget: &mut Budget) -> Result<(), Error> {
        let (bucket, wait) = match &self.limiter {
            None => return Ok(()),
            Some(Limiter::Deny) => return Err(PoolError::RateLimited.into()),
            Some(Limiter::Bucket { bucket, wait }) => (bucket, *wait),
        };
        loop {
            let not_until = match bucket.check() {
                Ok(()) => return Ok(()),
                Err(not_until) if wait => not_until,
                Err(_) => return Err(PoolError::RateLimited.into()),
            };
            let until = Instant::now() + not_until.wait_time_from(DefaultClock::default().now());
            if until > budget.deadline() {
                return Err(budget.expired(TimeoutStage::RateLimit));
            }
            tokio::time::sleep_until(until).await;
        }
    }
}
