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

/// Derives `iproto::IprotoPack`; see `iproto::pack` for the `#[iproto(...)]` attributes.
#[proc_macro_derive(IprotoPack, attributes(iproto))]
pub fn derive_iproto_pack(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    pack::expand(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Derives `iproto::IprotoUnpack<'de>`; see `iproto::pack` for the `#[iproto(...)]` attributes.
#[proc_macro_derive(IprotoUnpack, attributes(iproto))]
pub fn derive_iproto_unpack(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    unpack::expand(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Derives `iproto::rpc::ServiceError` (and `IprotoPack`) for an error enum.
#[proc_macro_derive(ServiceError, attributes(iproto))]
pub fn derive_service_error(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    error::expand(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Derives `iproto::rpc::Request` from `#[request(msg = .., response = Type)]`, or
/// `iproto::rpc::Notice` from `#[request(msg = .., notify)]`.
#[proc_macro_derive(Request, attributes(request))]
pub fn derive_request(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    request::expand(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Turns a trait into an iproto service: a typed client and a server.
#[proc_macro_attribute]
pub fn service(args: TokenStream, input: TokenStream) -> TokenStream {
    service::expand(args.into(), input.into()).unwrap_or_else(syn::Error::into_compile_error).into()
}
