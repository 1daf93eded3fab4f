//! `tower::Service` for [`Channel`] and [`Pool`] (raw calls) and [`Client`] (typed calls), so that
//! timeout, retry, load-shedding and metrics layers stack on them.

use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;

use super::client::{call_encoded, encode};
use super::{CallError, Client, Request};
use crate::channel::{CallOptions, Channel, Sender};
use crate::{Error, Pool};

type BoxFuture<T> = futures_util::future::BoxFuture<'static, T>;

/// A raw call for `tower::Service<RawCall> for Channel`.
///
/// ```
/// use tower::{Service, ServiceExt};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), iproto::Error> {
/// # let (a, b) = tokio::io::duplex(4096);
/// # let _echo = iproto::Channel::new(a, iproto::ChannelConfig::server()
/// #     .with_handler(|p: iproto::Packet, _: iproto::Channel| async move { Some(p.body) }));
/// let mut channel = iproto::Channel::new(b, iproto::ChannelConfig::client());
/// let reply = channel.ready().await?.call(iproto::rpc::RawCall::new(0x10, "hi")).await?;
/// assert_eq!(&reply[..], b"hi");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RawCall {
    /// The message code.
    pub msg: u32,
    /// The body.
    pub body: Bytes,
    /// Per-call options.
    pub options: CallOptions,
}

impl RawCall {
    /// A call of `msg` with `body` and default options.
    pub fn new(msg: u32, body: impl Into<Bytes>) -> Self {
        RawCall { msg, body: body.into(), options: CallOptions::default() }
    }
}

impl tower::Service<RawCall> for Channel {
    type Response = Bytes;
    type Error = Error;
    type Future = BoxFuture<Result<Bytes, Error>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(if self.is_stopped() { Err(Error::Stopped) } else { Ok(()) })
    }

    fn call(&mut self, req: RawCall) -> Self::Future {
        let channel = self.clone();
        Box::pin(async move { channel.call_with(req.msg, &req.body, req.options).await })
    }
}

impl tower::Service<RawCall> for Pool {
    type Response = Bytes;
    type Error = Error;
    type Future = BoxFuture<Result<Bytes, Error>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: RawCall) -> Self::Future {
        let pool = self.clone();
        Box::pin(async move { pool.call_with(req.msg, &req.body, req.options).await })
    }
}

impl<S, R> tower::Service<R> for Client<S>
where
    S: Sender + Clone + 'static,
    R: Request,
{
    type Response = R::Response;
    type Error = CallError;
    type Future = BoxFuture<Result<R::Response, CallError>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), CallError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Self::Future {
        let sender = self.sender.clone();
        let options = self.options;
        // Packed here, so that the future does not hold `req`.
        match encode(R::MSG, &req) {
            Ok(body) => Box::pin(async move { call_encoded(&sender, R::MSG, body, options).await }),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }
}
