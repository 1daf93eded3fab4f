//! Calls over a cluster: attempts on the servers the balancer picks, retried under one
//! deadline (a call that never left goes to another server; one that may have arrived only
//! when idempotent), hedging for idempotent calls, and fan-out to many servers at once.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::{select, Either};
use tokio::time::Instant;

use super::list::{ClusterError, ServerSpec};
use super::member::Member;
use super::{member_id, Cluster};
use crate::channel::CallOptions;
use crate::error::TimeoutStage;
use crate::pool::Pick;
use crate::wire::{FrameError, Packet};
use crate::Error;

/// What one attempt sends.
#[derive(Clone, Copy)]
pub(super) enum Op<'a> {
    Call { msg: u32, body: &'a [u8] },
    Notify { msg: u32, body: &'a [u8] },
    Send(&'a Packet),
}

impl Op<'_> {
    fn msg(&self) -> u32 {
        match *self {
            Op::Call { msg, .. } | Op::Notify { msg, .. } => msg,
            Op::Send(packet) => packet.header.msg,
        }
    }
}

/// What a failed attempt allows.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    /// The request certainly did not reach the server: another server may take it.
    NotSent,
    /// The request may have reached the server: retried only when idempotent.
    MaybeSent,
    /// Every server would refuse it the same way.
    Final,
}

fn fate(e: &Error) -> Fate {
    match e {
        // Not sent, but no other server would take it either.
        Error::ReservedCode(_)
        | Error::Frame(FrameError::BodyOverflow { .. })
        | Error::Pack(_)
        | Error::InvalidAddress(_)
        | Error::Cluster(_) => Fate::Final,
        Error::Connect { .. } => Fate::NotSent,
        e if e.is_not_sent() => Fate::NotSent,
        _ => Fate::MaybeSent,
    }
}

/// The reply of one server to a fan-out.
#[derive(Debug)]
pub struct Shard {
    /// The server.
    pub server: ServerSpec,
    /// For [`Cluster::fan_out_keys`]: the positions of the keys this server holds.
    pub keys: Vec<usize>,
    /// Its reply.
    pub result: Result<Bytes, Error>,
}

/// A whole call's bound.
#[derive(Clone, Copy)]
struct Bounds {
    budget: std::time::Duration,
    deadline: Instant,
}

impl Bounds {
    /// `e`, or when it is a reply timeout that ran into the whole call's deadline, that
    /// timeout named with the whole budget (not an attempt's rest).
    fn whole(self, op: Op<'_>, e: Error) -> Error {
        match e {
            Error::Timeout { stage: TimeoutStage::Reply, .. } if Instant::now() >= self.deadline => {
                Error::Timeout { msg: op.msg(), after: self.budget, stage: TimeoutStage::Reply }
            }
            e => e,
        }
    }
}

/// The server of a call's first attempt.
enum Chosen<'o> {
    /// A call, with the channel its server's pool has ready.
    Ready { id: usize, pick: Pick, msg: u32, body: &'o [u8] },
    /// Anything else: the pool's general path on this member.
    Member(Arc<Member>),
}

/// One attempt on `member`, bounded by `deadline` (a timer: the fast path in
/// [`Cluster::run`] makes the first attempt of most calls without one).
async fn attempt(member: &Member, op: Op<'_>, opts: CallOptions, deadline: Instant) -> Result<Bytes, Error> {
    member.count_call();
    let sent = async {
        match op {
            Op::Call { msg, body } => member.pool.call_with(msg, body, opts).await,
            Op::Notify { msg, body } => member.pool.notify(msg, body).await.map(|()| Bytes::new()),
            Op::Send(packet) => member.pool.send(packet.clone()).await.map(|()| Bytes::new()),
        }
    };
    let msg = op.msg();
    let after = opts.timeout.unwrap_or_default();
    tokio::time::timeout_at(deadline, sent).await.unwrap_or(Err(Error::Timeout {
        msg,
        after,
        stage: TimeoutStage::Reply,
    }))
}

impl Cluster {
    /// A call, notification or packet: attempts until one succeeds, an error forbids another
    /// (see [`Fate`]), `max_attempts` are used, or the deadline passes.
    ///
    /// The first attempt is the fast path every call takes: one pick from this thread's copy
    /// of the topology, then the channel its pool has ready (the pool's own fast path, without
    /// the pool's future around the channel's), bounded by the call's one deadline (no timer
    /// of ours). Only a failed attempt and hedging enter [`retry`](Self::retry), boxed, so that
    /// its state does not make every call's future larger.
    // A block, not an `async fn`: the arguments stay where they were captured instead of
    // being copied once more into the future.
    #[allow(clippy::manual_async_fn)]
    pub(super) fn run<'s, 'k, 'o>(
        &'s self,
        key: Option<&'k [u8]>,
        op: Op<'o>,
        opts: CallOptions,
    ) -> impl Future<Output = Result<Bytes, Error>> + Send + use<'s, 'k, 'o> {
        async move {
            let call = self.bounds(op, opts);
            let deadline = call.deadline;
            if self.inner.config.hedge_after.is_some() && opts.idempotent && matches!(op, Op::Call { .. }) {
                return Box::pin(self.retry(key, op, opts, call, Vec::new(), None)).await;
            }
            // Calls (the common case) pick their server and its pool's channel under this
            // thread's topology lock, with no reference count touched: only the channel is
            // held while the reply is awaited, and the member is found again by its identity
            // when the attempt failed.
            let chosen = self.inner.topology.with(|t| -> Result<Chosen<'o>, Error> {
                let member = t.pick(key, &[])?.ok_or(Error::Cluster(ClusterError::NoServer))?;
                member.count_call();
                Ok(match (op, member.pool.ready()) {
                    (Op::Call { msg, body }, Some(pick)) => Chosen::Ready { id: member_id(member), pick, msg, body },
                    _ => Chosen::Member(member.clone()),
                })
            })?;
            let (member, e) = match chosen {
                Chosen::Ready { id, pick, msg, body } => {
                    let e = match pick.channel().call_until(msg, body, opts, Some(deadline)).await {
                        Ok(reply) => return Ok(reply),
                        Err(e) => e,
                    };
                    drop(pick);
                    let Some(member) = self.topology().member(id).cloned() else {
                        // Removed from the list meanwhile: nothing to record against it.
                        return self.after_first(key, op, opts, call, id, e).await;
                    };
                    match member.pool.second_try(e, msg, body, opts, Some(deadline)).await {
                        Ok(reply) => return Ok(reply),
                        Err(e) => (member, e),
                    }
                }
                Chosen::Member(member) => {
                    // The pool bounds a call by its timeout (one deadline, and with the default
                    // timeout no timer of its own) and a notification by its own budget; a
                    // notification with a timeout of its own and a packet sent as is are
                    // bounded here.
                    let result = match op {
                        // No channel was ready: the pool's own call, which waits for one.
                        Op::Call { msg, body } => {
                            Box::pin(member.pool.call_until(msg, body, opts, Some(deadline))).await
                        }
                        Op::Notify { msg, body } if opts.timeout.is_none() => {
                            Box::pin(member.pool.notify(msg, body)).await.map(|()| Bytes::new())
                        }
                        _ => Box::pin(attempt(&member, op, opts, deadline)).await,
                    };
                    match result {
                        Ok(reply) => return Ok(reply),
                        Err(e) => (member, e),
                    }
                }
            };
            member.failed(&e);
            self.after_first(key, op, opts, call, member_id(&member), e).await
        }
    }

    /// What follows a failed first attempt on the server `id`: the error, or the retries its
    /// fate allows (boxed: most calls never get here).
    async fn after_first(
        &self,
        key: Option<&[u8]>,
        op: Op<'_>,
        opts: CallOptions,
        call: Bounds,
        id: usize,
        e: Error,
    ) -> Result<Bytes, Error> {
        match fate(&e) {
            Fate::Final => Err(e),
            Fate::MaybeSent if !opts.idempotent => Err(call.whole(op, e)),
            _ => Box::pin(self.retry(key, op, opts, call, vec![id], Some(e))).await,
        }
    }

    /// The whole call's bound: its timeout, else the pool's for this kind of op, from now.
    fn bounds(&self, op: Op<'_>, opts: CallOptions) -> Bounds {
        let channel = &self.inner.config.pool.channel;
        let budget = opts.timeout.unwrap_or(match op {
            Op::Notify { .. } => channel.notify_timeout,
            _ => channel.request_timeout,
        });
        Bounds { budget, deadline: Instant::now() + budget }
    }

    /// The attempts after the first (or all of them, for hedged calls): each on a server not
    /// tried yet, with what is left of the deadline.
    async fn retry(
        &self,
        key: Option<&[u8]>,
        op: Op<'_>,
        opts: CallOptions,
        call: Bounds,
        mut tried: Vec<usize>,
        mut last_error: Option<Error>,
    ) -> Result<Bytes, Error> {
        let config = &self.inner.config;
        let Bounds { budget, deadline } = call;
        while tried.len() < config.max_attempts.max(1) as usize {
            if !tried.is_empty() && !config.retry_delay.is_zero() {
                tokio::time::sleep_until((Instant::now() + config.retry_delay).min(deadline)).await;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Error::Timeout { msg: op.msg(), after: budget, stage: TimeoutStage::Reply });
            }
            let topology = self.topology();
            let Some(member) = topology.pick(key, &tried)? else { break };
            let opts = CallOptions { timeout: Some(remaining), ..opts };
            let hedge = match (config.hedge_after, op) {
                (Some(after), Op::Call { .. }) if opts.idempotent && tried.len() + 1 < config.max_attempts as usize => {
                    Some(after)
                }
                _ => None,
            };
            let result = match hedge {
                Some(after) => self.hedged(&topology, key, member, op, opts, deadline, after, &mut tried).await,
                None => {
                    let result = attempt(member, op, opts, deadline).await;
                    if let Err(e) = &result {
                        member.failed(e);
                        tried.push(member_id(member));
                    }
                    result
                }
            };
            match result {
                Ok(reply) => return Ok(reply),
                Err(e) => match fate(&e) {
                    Fate::Final => return Err(e),
                    Fate::MaybeSent if !opts.idempotent => return Err(call.whole(op, e)),
                    _ => last_error = Some(e),
                },
            }
        }
        Err(last_error.map_or(Error::Cluster(ClusterError::NoServer), |e| call.whole(op, e)))
    }

    pub(super) async fn run_unit(&self, key: Option<&[u8]>, op: Op<'_>) -> Result<(), Error> {
        self.run(key, op, CallOptions::default()).await.map(drop)
    }

    /// An idempotent call on `first`, and after `after` without a reply a second attempt on
    /// another server; the first reply wins and the other attempt is dropped.
    #[allow(clippy::too_many_arguments)]
    async fn hedged(
        &self,
        topology: &super::Topology,
        key: Option<&[u8]>,
        first: &Arc<Member>,
        op: Op<'_>,
        opts: CallOptions,
        deadline: Instant,
        after: std::time::Duration,
        tried: &mut Vec<usize>,
    ) -> Result<Bytes, Error> {
        let one = Box::pin(attempt(first, op, opts, deadline));
        let timer = Box::pin(tokio::time::sleep_until((Instant::now() + after).min(deadline)));
        let one = match select(one, timer).await {
            Either::Left((result, _)) => {
                if let Err(e) = &result {
                    first.failed(e);
                    tried.push(member_id(first));
                }
                return result;
            }
            Either::Right(((), one)) => one,
        };
        tried.push(member_id(first));
        let Some(second) = topology.pick(key, tried)? else {
            let result = one.await;
            if let Err(e) = &result {
                first.failed(e);
            }
            return result;
        };
        tried.push(member_id(second));
        self.inner.hedges.fetch_add(1, Relaxed);
        let two = Box::pin(attempt(second, op, opts, deadline));
        match select(one, two).await {
            Either::Left((Ok(reply), _)) => Ok(reply),
            Either::Right((Ok(reply), _)) => {
                self.inner.hedge_wins.fetch_add(1, Relaxed);
                Ok(reply)
            }
            Either::Left((Err(e), two)) => {
                first.failed(&e);
                let result = two.await;
                if let Err(e) = &result {
                    second.failed(e);
                } else {
                    self.inner.hedge_wins.fetch_add(1, Relaxed);
                }
                result
            }
            Either::Right((Err(e), one)) => {
                second.failed(&e);
                let result = one.await;
                if let Err(e) = &result {
                    first.failed(e);
                }
                result
            }
        }
    }

    /// Sends one request to every server at once and returns each one's reply (list order),
    /// all under one deadline (`opts.timeout`, else the request timeout). No retries: each
    /// reply is that server's.
    pub async fn fan_out(&self, msg: u32, body: &[u8], opts: CallOptions) -> Vec<Shard> {
        let topology = self.topology();
        let deadline = Instant::now() + opts.timeout.unwrap_or(self.inner.config.pool.channel.request_timeout);
        let calls = topology.members.iter().zip(topology.list.servers()).map(|(member, spec)| async move {
            let result = attempt(member, Op::Call { msg, body }, opts, deadline).await;
            if let Err(e) = &result {
                member.failed(e);
            }
            Shard { server: spec.clone(), keys: Vec::new(), result }
        });
        futures_util::future::join_all(calls).await
    }

    /// Groups `keys` by the server each is placed on now and sends each of those servers
    /// one request, `body(keys of that server)`, all at once under one deadline. Each
    /// [`Shard`] lists the positions in `keys` of the keys it holds.
    pub async fn fan_out_keys<K, F>(
        &self,
        keys: &[K],
        msg: u32,
        body: F,
        opts: CallOptions,
    ) -> Result<Vec<Shard>, Error>
    where
        K: AsRef<[u8]>,
        F: Fn(&[usize]) -> Vec<u8>,
    {
        let topology = self.topology();
        let deadline = Instant::now() + opts.timeout.unwrap_or(self.inner.config.pool.channel.request_timeout);
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        for (k, key) in keys.iter().enumerate() {
            let member = topology.pick(Some(key.as_ref()), &[])?.ok_or(ClusterError::NoServer)?;
            let i = topology.members.iter().position(|m| Arc::ptr_eq(m, member)).unwrap_or(0);
            match groups.iter_mut().find(|g| g.0 == i) {
                Some(group) => group.1.push(k),
                None => groups.push((i, vec![k])),
            }
        }
        let calls = groups.into_iter().map(|(i, keys)| {
            let body = body(&keys);
            let member = &topology.members[i];
            let server = topology.list.servers()[i].clone();
            async move {
                let result = attempt(member, Op::Call { msg, body: &body }, opts, deadline).await;
                if let Err(e) = &result {
                    member.failed(e);
                }
                Shard { server, keys, result }
            }
        });
        Ok(futures_util::future::join_all(calls).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_before_the_write_may_go_elsewhere_and_others_only_when_idempotent() {
        assert_eq!(fate(&Error::Pool(crate::PoolError::Cutoff)), Fate::NotSent);
        assert_eq!(fate(&Error::Stopped), Fate::NotSent);
        let timeout = |stage| Error::Timeout { msg: 1, after: std::time::Duration::from_secs(1), stage };
        assert_eq!(fate(&timeout(TimeoutStage::Reply)), Fate::MaybeSent);
        assert_eq!(fate(&timeout(TimeoutStage::Channel)), Fate::NotSent);
        assert_eq!(fate(&Error::Dropped(None)), Fate::MaybeSent);
        assert_eq!(fate(&Error::ReservedCode(0xff00)), Fate::Final);
        assert_eq!(fate(&Error::Cluster(ClusterError::KeyRequired { balance: "ketama" })), Fate::Final);
    }
}
