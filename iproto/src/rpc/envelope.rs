//! The return-code envelope of `Result` replies (Octopus / Tarantool 1.5 style): a `u32`
//! return code, 0 and the value, or the error's code and its body; [`ServiceError`] and
//! [`RemoteError`], and the reserved-code rejections of the RPC layer itself.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::{RC_OK, RC_RESERVED_MIN};
use crate::encoding::{DecodeError, IprotoPack, IprotoUnpack, Mode, PackError, Reader};

/// An error type sent as the non-zero return code of a `Result` reply, followed by a body
/// (its [`IprotoPack`] encoding).
///
/// ```
/// use iproto::rpc::ServiceError;
/// use iproto::{DecodeError, IprotoPack, Mode, PackError, Reader};
///
/// #[derive(Debug, PartialEq)]
/// enum KvError { NotFound, TooLarge { limit: u32 } }
///
/// impl IprotoPack for KvError {
///     fn pack<B: bytes::BufMut>(&self, buf: &mut B, mode: Mode) -> Result<(), PackError> {
///         match self {
///             KvError::NotFound => Ok(()),
///             KvError::TooLarge { limit } => limit.pack(buf, mode),
///         }
///     }
/// }
///
/// impl ServiceError for KvError {
///     fn code(&self) -> u32 {
///         match self { KvError::NotFound => 1, KvError::TooLarge { .. } => 2 }
///     }
///     fn decode(code: u32, body: &mut Reader<'_>) -> Result<Self, DecodeError> {
///         match code {
///             1 => Ok(KvError::NotFound),
///             2 => Ok(KvError::TooLarge { limit: iproto::IprotoUnpack::unpack(body, Mode::Fixed)? }),
///             _ => Err(DecodeError::custom(format!("unknown KvError code {code}"), body.position())),
///         }
///     }
/// }
///
/// let reply: Result<u32, KvError> = Err(KvError::TooLarge { limit: 9 });
/// assert_eq!(iproto::pack(&reply).unwrap(), [2, 0, 0, 0, 9, 0, 0, 0]);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `ServiceError`, so it cannot be the error of a `Result` reply",
    label = "the error of a `Result` reply travels as a return code and needs `ServiceError`",
    note = "derive it: #[derive(iproto::ServiceError)] with #[iproto(code = N)] on each variant, \
            or use iproto::rpc::RemoteError (a code and a message)"
)]
pub trait ServiceError: IprotoPack + Sized {
    /// The return code: non-zero and below [`RC_RESERVED_MIN`].
    fn code(&self) -> u32;

    /// Rebuilds the error from its return code and the rest of the body.
    fn decode(code: u32, body: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

/// A Tarantool 1.5 style error: a return code and a message, the message taking the rest of
/// the body with no length prefix.
///
/// ```
/// use iproto::rpc::RemoteError;
///
/// let reply: Result<(), RemoteError> = Err(RemoteError::new(0x31, "no such space"));
/// let bytes = iproto::pack(&reply).unwrap();
/// assert_eq!(&bytes[..4], [0x31, 0, 0, 0]);
/// assert_eq!(iproto::unpack_exact::<Result<(), RemoteError>>(&bytes).unwrap(), reply);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("error {code:#x}: {message}")]
pub struct RemoteError {
    /// The return code.
    pub code: u32,
    /// The message (invalid UTF-8 replaced).
    pub message: String,
}

impl RemoteError {
    /// An error with `code` and `message`.
    pub fn new(code: u32, message: impl Into<String>) -> Self {
        RemoteError { code, message: message.into() }
    }
}

impl IprotoPack for RemoteError {
    fn pack<B: BufMut>(&self, buf: &mut B, _mode: Mode) -> Result<(), PackError> {
        buf.put_slice(self.message.as_bytes());
        Ok(())
    }

    fn size_hint(&self, _mode: Mode) -> usize {
        self.message.len()
    }
}

impl ServiceError for RemoteError {
    fn code(&self) -> u32 {
        self.code
    }

    fn decode(code: u32, body: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let rest = body.take(body.remaining())?;
        Ok(RemoteError { code, message: String::from_utf8_lossy(rest).into_owned() })
    }
}

/// The return-code envelope (see the [module docs](crate::rpc)).
impl<T: IprotoPack, E: ServiceError> IprotoPack for Result<T, E> {
    fn pack<B: BufMut>(&self, buf: &mut B, mode: Mode) -> Result<(), PackError> {
        match self {
            Ok(value) => {
                buf.put_u32_le(RC_OK);
                value.pack(buf, mode)
            }
            Err(error) => {
                let code = error.code();
                if code == RC_OK || code >= RC_RESERVED_MIN {
                    return Err(PackError::Custom(Box::new(BadErrorCode(code))));
                }
                buf.put_u32_le(code);
                error.pack(buf, mode)
            }
        }
    }

    fn size_hint(&self, mode: Mode) -> usize {
        4 + match self {
            Ok(value) => value.size_hint(mode),
            Err(error) => error.size_hint(mode),
        }
    }
}

impl<'de, T: IprotoUnpack<'de>, E: ServiceError> IprotoUnpack<'de> for Result<T, E> {
    fn unpack(r: &mut Reader<'de>, mode: Mode) -> Result<Self, DecodeError> {
        let at = r.position();
        match u32::unpack(r, Mode::Fixed)? {
            RC_OK => T::unpack(r, mode).map(Ok),
            code if code >= RC_RESERVED_MIN => Err(DecodeError::custom(format!("reserved return code {code:#x}"), at)),
            code => E::decode(code, r).map(Err),
        }
    }

    fn min_size(_mode: Mode) -> usize {
        4
    }
}

/// An error's code is 0 or reserved, so it cannot be told apart from success or a rejection.
#[derive(Debug, thiserror::Error)]
#[error("service error code {0:#x} is 0 or reserved (>= 0xffff_ff00)")]
struct BadErrorCode(u32);

/// The code and message of a reserved-code reply.
pub(crate) fn rejection(body: &[u8]) -> Option<(u32, String)> {
    let (code, message) = body.split_first_chunk::<4>()?;
    let code = u32::from_le_bytes(*code);
    (code >= RC_RESERVED_MIN).then(|| (code, String::from_utf8_lossy(message).into_owned()))
}

pub(crate) fn rejection_body(code: u32, why: &dyn fmt::Display) -> Bytes {
    let why = why.to_string();
    let mut body = BytesMut::with_capacity(4 + why.len());
    body.put_u32_le(code);
    body.put_slice(why.as_bytes());
    body.freeze()
}
