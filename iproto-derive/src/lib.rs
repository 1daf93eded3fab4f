//! Derive and attribute macros of `mr-iproto`; use them through `iproto` (`iproto::IprotoPack`,
//! `iproto::rpc::ServiceError`, `iproto::Request`, `#[iproto::service]`), whose docs show these
//! pages with tested examples.
//!
//! Each macro is a small compiler: `attr` parses every attribute list once into typed
//! per-place models (collecting every misuse with its span), `model` validates a derive input
//! into a model of the type, and `pack`, `unpack`, `error`, `request` and `service` generate
//! code from the models only. Generated code names generics and locals with `__` and calls
//! support code through `iproto::__private`.

mod attr;
mod error;
mod model;
mod pack;
mod request;
mod service;
mod unpack;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Derives `iproto::IprotoPack`: the fields in declaration order, each in Fixed mode unless its
/// attributes say otherwise. The `iproto::encoding` module's page has the rules and more examples.
///
/// | attribute | on | effect |
/// |---|---|---|
/// | `ber` | struct | every field defaults to BER (Perl `pack 'w'`) |
/// | `ber` | field | the field in BER (a sequence: its count) |
/// | `fixed` | field | the field in Fixed mode despite a struct's `ber` |
/// | `elem = ber` | sequence field | the elements in BER too |
/// | `skip` | field | not on the wire; `Default::default()` when unpacking |
/// | `with = path` | field | `path::pack(&v, buf, mode)` / `path::unpack(r, mode)` |
/// | `tag = u8 \| u16 \| u32 \| ber` | enum | required: how the variant tag is written |
/// | `tag_value = N` | variant | the variant's tag (default: its discriminant, else previous + 1) |
///
/// Field types must implement the traits themselves: integers (`u8`..`u64`, `i8`..`i64`),
/// `bool`, `String`, `&str`, `Vec<u8>`, `&[u8]`, `Bytes`, `Vec<T>`, `Option<T>`, tuples,
/// arrays and derived types. `usize`, floats and maps are not iproto types: use `u64`, or a
/// `with = ...` module that fixes their encoding.
///
/// ```
/// use iproto::{IprotoPack, IprotoUnpack};
///
/// #[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
/// struct Put<'a> {
///     space: u32,
///     #[iproto(ber)]
///     key: &'a str,
///     #[iproto(skip)]
///     local_only: bool,
/// }
///
/// let bytes = iproto::pack(&Put { space: 1, key: "k", local_only: true }).unwrap();
/// assert_eq!(bytes, [1, 0, 0, 0, 1, b'k']);
/// assert_eq!(iproto::unpack_exact::<Put>(&bytes).unwrap(), Put { space: 1, key: "k", local_only: false });
/// ```
#[proc_macro_derive(IprotoPack, attributes(iproto))]
pub fn derive_iproto_pack(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    pack::expand(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Derives `iproto::IprotoUnpack<'de>`, the reverse of `IprotoPack` with the same
/// `#[iproto(...)]` attributes (see its table). `&'a str` and `&'a [u8]` fields borrow from the
/// input; decoding is strict (short input, an unknown enum tag, invalid UTF-8 and BER overflow
/// are errors naming the field path and byte offset), and sequence counts are checked against
/// the input's length before anything is allocated.
///
/// ```
/// use iproto::{IprotoPack, IprotoUnpack};
///
/// #[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
/// #[iproto(tag = u8)]
/// enum Op<'a> {
///     Ping,                 // tag 0
///     Get { key: &'a str }, // tag 1
/// }
///
/// let bytes = [1, 2, 0, 0, 0, b'h', b'i'];
/// assert_eq!(iproto::unpack_exact::<Op>(&bytes).unwrap(), Op::Get { key: "hi" });
/// let err = iproto::unpack_exact::<Op>(&[9]).unwrap_err();
/// assert_eq!(err.to_string(), "decode error at byte 0 in Op: unknown tag 9 for enum Op");
/// ```
#[proc_macro_derive(IprotoUnpack, attributes(iproto))]
pub fn derive_iproto_unpack(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    unpack::expand(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Derives `iproto::rpc::ServiceError` for an error enum, so that a service method can return
/// `Result<T, ThisError>`: the reply carries the variant's code (a `u32`, never 0) and then the
/// variant's fields, packed like struct fields (field attributes as for `IprotoPack`). The
/// client decodes the code back to the variant; an unknown code is a decode error.
///
/// | attribute | on | effect |
/// |---|---|---|
/// | `code = N` | every variant | required: the variant's return code, non-zero, unique, below `0xffff_ff00` |
///
/// ```
/// use iproto::rpc::ServiceError;
///
/// #[derive(Debug, PartialEq, iproto::rpc::ServiceError)]
/// enum KvError {
///     #[iproto(code = 1)]
///     NotFound,
///     #[iproto(code = 2)]
///     TooLarge { limit: u32 },
/// }
///
/// assert_eq!(KvError::TooLarge { limit: 64 }.code(), 2);
/// ```
#[proc_macro_derive(ServiceError, attributes(iproto))]
pub fn derive_service_error(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    error::expand(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Derives `iproto::rpc::Request` (a message code and a reply type) or `iproto::rpc::Notification`
/// (a one-way message) for a type that also implements `IprotoPack`.
///
/// | attribute | effect |
/// |---|---|
/// | `#[request(msg = N, response = Type)]` | a request: code `N` (below `0xff00`), answered with `Type` |
/// | `#[request(msg = N, notify)]` | a one-way message with code `N`, never answered |
///
/// ```
/// use iproto::{IprotoPack, IprotoUnpack, Request};
///
/// #[derive(IprotoPack, IprotoUnpack, Request)]
/// #[request(msg = 0x10, response = Option<String>)]
/// struct Get { key: String }
///
/// #[derive(IprotoPack, IprotoUnpack, Request)]
/// #[request(msg = 0x11, notify)]
/// struct Touch { key: String }
///
/// assert_eq!(<Get as iproto::rpc::Request>::MSG, 0x10);
/// assert_eq!(<Touch as iproto::rpc::Notification>::MSG, 0x11);
/// ```
#[proc_macro_derive(Request, attributes(request))]
pub fn derive_request(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    request::expand(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Turns a trait into an iproto service: the trait (with `Send` futures), a typed client
/// `{Trait}Client<S: Sender>` and a server `{Trait}Server<T: Trait>`, which is a `Handler`
/// (serve it directly) and can also register its routes on a `ServeMux` you own.
///
/// Each method is `async fn name(&self, args..) [-> Reply]` with a message code:
///
/// | attribute | effect |
/// |---|---|
/// | `#[iproto(msg = N)]` | required: the method's code, unique in the trait, below `0xff00` |
/// | `#[iproto(msg = N, notify)]` | a one-way message: no reply type, the client's method only sends |
/// | `#[iproto(msg = N, raw)]` | send a reply named `...Result` as its raw body, not the return-code envelope |
///
/// - **Arguments**: any number after `&self`, packed as one body in declaration order (one
///   argument as itself). A parameter of type `Context` (at any position) is not sent: the
///   server passes the request's context (code, sync, peer, connection, cancellation tokens).
///   Arguments may borrow (`&'a str`, `Put<'a>`): the server decodes them without copying.
/// - **Replies**: `Result<T, E>` (or an alias whose name ends in `Result`) uses the Octopus
///   return-code envelope, `E:` `ServiceError` (`RemoteError`, or `#[derive(ServiceError)]`);
///   any other type is sent as its packed body; none for `notify`.
/// - **Client**: `{Trait}Client::new(sender)` over a `Channel`, `Pool` or `Cluster`; each method
///   takes the arguments by reference and returns `Result<T, CallError<E>>`, with a `_with`
///   variant taking `CallOptions`.
/// - **Server**: `{Trait}Server::new(service)` (or `from_arc`); `into_mux()` or
///   `register(&mut mux)` for a mux of your own. Unknown codes and undecodable requests are
///   answered with `RC_UNKNOWN_MSG` / `RC_BAD_REQUEST`, never left to time out.
///
/// Mistakes (a missing or duplicate code, a reserved code, a non-async method, a reply on a
/// `notify` method, an unknown attribute) are compile errors at the method or attribute.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use iproto::rpc::{CallError, Context};
/// use iproto::{Channel, ChannelConfig};
///
/// #[derive(Debug, PartialEq, iproto::rpc::ServiceError)]
/// pub enum KvError {
///     #[iproto(code = 1)]
///     NotFound,
/// }
///
/// #[iproto::service]
/// pub trait Kv {
///     #[iproto(msg = 0x10)]
///     async fn put(&self, key: String, value: Vec<u8>) -> Result<(), KvError>;
///     #[iproto(msg = 0x11)]
///     async fn get(&self, cx: Context, key: String) -> Result<Vec<u8>, KvError>;
/// }
///
/// #[derive(Default)]
/// struct Store(std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>);
///
/// impl Kv for Store {
///     async fn put(&self, key: String, value: Vec<u8>) -> Result<(), KvError> {
///         self.0.lock().unwrap().insert(key, value);
///         Ok(())
///     }
///     async fn get(&self, _cx: Context, key: String) -> Result<Vec<u8>, KvError> {
///         self.0.lock().unwrap().get(&key).cloned().ok_or(KvError::NotFound)
///     }
/// }
///
/// let (a, b) = tokio::io::duplex(64 * 1024);
/// let _server = Channel::new(a, ChannelConfig::server().with_handler(KvServer::new(Store::default())));
/// let kv = KvClient::new(Channel::new(b, ChannelConfig::client()));
/// kv.put(&"k".to_string(), &b"v".to_vec()).await.expect("put");
/// assert_eq!(kv.get(&"k".to_string()).await.expect("get"), b"v");
/// assert!(matches!(kv.get(&"nope".to_string()).await, Err(CallError::Service(KvError::NotFound))));
/// # Ok(()) }
/// ```
#[proc_macro_attribute]
pub fn service(args: TokenStream, input: TokenStream) -> TokenStream {
    service::expand(args.into(), input.into()).unwrap_or_else(syn::Error::into_compile_error).into()
}
