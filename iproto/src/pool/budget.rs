//! A pool call's one deadline: the call's timeout bounds the rate-limit wait, the wait for a
//! channel and the request together, and a timeout names the stage that ran out.

use std::time::Duration;

use tokio::time::Instant;

use crate::error::TimeoutStage;
use crate::Error;

/// The time a pool call may take, started when the call first has to wait.
///
/// A call that waits for nothing (a token at hand, a channel online) never reads the clock
/// here: the channel's own request timeout, started as the request is queued, is then the
/// same bound.
pub(super) struct Budget {
    msg: u32,
    budget: Duration,
    /// Whether the caller set the timeout (else it is the channel's default).
    explicit: bool,
    /// Started by the caller (a cluster that read the clock already).
    preset: Option<Instant>,
    deadline: Option<Instant>,
}

impl Budget {
    /// `timeout` as the caller gave it, or `default` (the channel's timeout for this kind of
    /// call).
    pub(super) fn new(msg: u32, timeout: Option<Duration>, default: Duration) -> Self {
        Budget { msg, budget: timeout.unwrap_or(default), explicit: timeout.is_some(), preset: None, deadline: None }
    }

    /// [`new`](Self::new), started by the caller: it ends at `deadline`.
    pub(super) fn until(self, deadline: Option<Instant>) -> Self {
        Budget { preset: deadline, ..self }
    }

    /// The deadline to hand the channel with [`remaining`](Self::remaining)'s `None`: the
    /// caller's, when it started one (so the channel need not read the clock again).
    pub(super) fn started(&self) -> Option<Instant> {
        self.preset.filter(|_| self.deadline.is_none())
    }

    /// The deadline, started now if nothing has waited yet.
    pub(super) fn deadline(&mut self) -> Instant {
        let preset = self.preset;
        *self.deadline.get_or_insert_with(|| preset.unwrap_or_else(|| Instant::now() + self.budget))
    }

    /// The error of a call whose deadline passed at `stage`.
    pub(super) fn expired(&self, stage: TimeoutStage) -> Error {
        Error::timeout(self.msg, self.budget, stage)
    }

    /// The timeout to hand the channel: `None` (its default) when nothing has waited and the
    /// caller set none, else what is left. `Err` when nothing is left.
    pub(super) fn remaining(&self) -> Result<Option<Duration>, Error> {
        match self.deadline {
            None => Ok(self.explicit.then_some(self.budget)),
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Ok(Some(left)),
                _ => Err(self.expired(TimeoutStage::Channel)),
            },
        }
    }

    /// A channel's timeout error reported against the whole budget, not the part left of it.
    pub(super) fn whole(&self, e: Error) -> Error {
        match e {
            Error::Timeout { stage, .. } if self.deadline.is_some() => self.expired(stage),
            e => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_budget_that_never_waited_leaves_the_default_to_the_channel() {
        let budget = Budget::new(7, None, Duration::from_secs(5));
        assert_eq!(budget.remaining().unwrap(), None);
        let explicit = Budget::new(7, Some(Duration::from_secs(2)), Duration::from_secs(5));
        assert_eq!(explicit.remaining().unwrap(), Some(Duration::from_secs(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_that_waited_hands_on_what_is_left_and_reports_the_whole() {
        let mut budget = Budget::new(7, None, Duration::from_secs(5));
        budget.deadline();
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(budget.remaining().unwrap(), Some(Duration::from_secs(2)));
        let e = budget.whole(Error::timeout(7, Duration::from_secs(2), TimeoutStage::Reply));
        assert!(
            matches!(e, Error::Timeout { msg: 7, after, stage: TimeoutStage::Reply } if after == Duration::from_secs(5)),
            "{e:?}"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        let e = budget.remaining().unwrap_err();
        assert!(matches!(e, Error::Timeout { stage: TimeoutStage::Channel, .. }), "{e:?}");
    }
}
