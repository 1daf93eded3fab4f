//! Derive macros for `mr-iproto`. Use them through `iproto::{IprotoPack, IprotoUnpack}`; the
//! attribute reference is in the docs of `iproto::pack`.
//!
//! The derive is a small compiler: `attr` parses `#[iproto(...)]` into typed attributes,
//! `model` validates them into a model of the type (collecting every error), and `pack` /
//! `unpack` generate the impls from that model.

mod attr;
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

/// Derives `iproto::rpc::Request` from `#[request(msg = .., response = Type)]`, or
/// `iproto::rpc::Notice` from `#[request(msg = .., notify)]`.
#[proc_macro_derive(Request, attributes(request))]
pub fn derive_request(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    request::expand(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Turns a trait into an iproto service: a typed client and a server adapter; see
/// `iproto::service`.
#[proc_macro_attribute]
pub fn service(args: TokenStream, input: TokenStream) -> TokenStream {
    service::expand(args.into(), input.into()).unwrap_or_else(syn::Error::into_compile_error).into()
}
