//! Support code called by the code that the macros generate. Not public API: it may change in
//! any release.

use std::fmt;
use std::future::Future;

use futures_util::future::{Either, FutureExt};

use crate::channel::{CallOptions, Sender};
use crate::encoding::{IprotoPack, IprotoUnpackOwned};
use crate::rpc::client::{call_encoded, call_flat_encoded, encode};
use crate::rpc::CallError;

pub use crate::rpc::server::{route_borrowed, BorrowedHandler};

/// Packs a generated client's arguments (one value, or a tuple of references) as the body.
/// A function of its own, so that the call future's type does not mention the arguments'.
pub fn pack_body<T: IprotoPack + ?Sized>(msg: u32, args: &T) -> Result<Vec<u8>, CallError> {
    encode(msg, args)
}

/// Calls `msg` with a packed body, decoding the reply as `Resp`.
pub fn call<'a, S, Resp>(
    sender: &'a S,
    msg: u32,
    body: Result<Vec<u8>, CallError>,
    opts: CallOptions,
) -> impl Future<Output = Result<Resp, CallError>> + Send + 'a
where
    S: Sender + ?Sized,
    Resp: IprotoUnpackOwned + 'a,
{
    match body {
        Ok(body) => Either::Left(call_encoded(sender, msg, body, opts)),
        Err(e) => Either::Right(std::future::ready(e).map(Err)),
    }
}

/// [`call`] for `Result<T, E>` replies, the service error folded into the call's error.
pub fn call_flat<'a, S, T, E>(
    sender: &'a S,
    msg: u32,
    body: Result<Vec<u8>, CallError>,
    opts: CallOptions,
) -> impl Future<Output = Result<T, CallError<E>>> + Send + 'a
where
    S: Sender + ?Sized,
    Result<T, E>: IprotoUnpackOwned + 'a,
    T: Send + 'a,
    E: Send + 'a,
{
    match body {
        Ok(body) => Either::Left(call_flat_encoded(sender, msg, body, opts)),
        Err(e) => Either::Right(std::future::ready(Err(e.widen()))),
    }
}

/// Sends the one-way message `msg` with a packed body.
pub async fn notify<S>(sender: &S, msg: u32, body: Result<Vec<u8>, CallError>) -> Result<(), CallError>
where
    S: Sender + ?Sized,
{
    Ok(sender.notify(msg, &body?).await?)
}

/// The parts of a `Result` reply named through an alias (`KvResult<T>`, `kv::Result<T>`), so
/// that the client can fold the error whatever the alias is called.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is named like a `Result` but is not a `Result<T, E>`",
    label = "a reply type whose name ends in `Result` is read as the return-code envelope",
    note = "mark the method `#[iproto(msg = .., raw)]` to send this type as it is"
)]
pub trait Envelope {
    /// The success type.
    type Ok;
    /// The error type.
    type Err;
}

impl<T, E> Envelope for Result<T, E> {
    type Ok = T;
    type Err = E;
}

/// A message code shown in hex by `Debug`.
pub struct Code(pub u32);

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}
