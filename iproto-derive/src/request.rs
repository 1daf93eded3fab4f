//! `#[derive(Request)]`: reads `#[request(msg = .., response = Type)]` or
//! `#[request(msg = .., notify)]` through the shared attribute model (never `#[iproto]`, whose
//! checks are the codec derive's) and implements `iproto::rpc::Request` or `iproto::rpc::Notification`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

use crate::attr::{Ctxt, RequestAttrs};

pub fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let cx = Ctxt::default();
    let attrs = RequestAttrs::from_ast(&cx, &input.ident, &input.attrs);
    cx.check()?;
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let msg = attrs.msg.unwrap_or_default();
    Ok(match attrs.response {
        Some(response) => quote! {
            #[automatically_derived]
            impl #impl_generics ::iproto::rpc::Request for #ident #ty_generics #where_clause {
                const MSG: u32 = #msg;
                type Response = #response;
            }
        },
        None => quote! {
            #[automatically_derived]
            impl #impl_generics ::iproto::rpc::Notification for #ident #ty_generics #where_clause {
                const MSG: u32 = #msg;
            }
        },
    })
}
