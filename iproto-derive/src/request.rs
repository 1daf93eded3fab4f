//! `#[derive(Request)]`: reads its own `#[request(msg = .., response = Type)]` or
//! `#[request(msg = .., notify)]` attribute (never `#[iproto]`, whose checks are the codec
//! derive's) and implements `iproto::rpc::Request` or `iproto::rpc::Notice`.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::spanned::Spanned;
use syn::{DeriveInput, LitInt, Type};

use crate::attr::Ctxt;

/// Codes from here on are iproto's control messages (ping, shutdown).
const RESERVED_MIN: u32 = 0xff00;

/// Parses a message code, refusing reserved ones; shared with `#[service]`.
pub fn parse_msg(lit: &LitInt, owner: &str) -> syn::Result<u32> {
    let code = lit.base10_parse::<u32>().map_err(|_| {
        syn::Error::new(lit.span(), format!("message code of {owner} must be an integer that fits u32"))
    })?;
    if code >= RESERVED_MIN {
        return Err(syn::Error::new(
            lit.span(),
            format!("message code {code:#x} of {owner} is reserved: codes >= 0xff00 are control messages"),
        ));
    }
    Ok(code)
}

/// What `#[request(...)]` says.
struct RequestAttrs {
    msg: Option<u32>,
    response: Option<Type>,
    notify: Option<Span>,
}

fn parse_attrs(cx: &Ctxt, input: &DeriveInput) -> RequestAttrs {
    let owner = format!("`{}`", input.ident);
    let mut out = RequestAttrs { msg: None, response: None, notify: None };
    let mut seen = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("request")) {
        seen = true;
        let res = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("msg") {
                let lit: LitInt = meta.value()?.parse()?;
                // A bad code is reported here; 0 stands in so it is not also "missing".
                out.msg = Some(parse_msg(&lit, &owner).unwrap_or_else(|e| {
                    cx.syn_error(e);
                    0
                }));
            } else if meta.path.is_ident("response") {
                out.response = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("notify") {
                out.notify = Some(meta.path.span());
            } else {
                return Err(meta.error("unknown request attribute; expected `msg`, `response` or `notify`"));
            }
            Ok(())
        });
        if let Err(e) = res {
            cx.syn_error(e);
        }
    }
    if !seen {
        cx.error_spanned_by(&input.ident, "#[derive(Request)] needs #[request(msg = 0x10, response = Reply)]");
    } else if out.msg.is_none() {
        cx.error_spanned_by(&input.ident, format!("{owner} needs a message code: #[request(msg = 0x10, ..)]"));
    }
    match (&out.response, out.notify) {
        (Some(ty), Some(_)) => cx.error_spanned_by(ty, "a `notify` message has no `response`"),
        (None, None) if seen => cx.error_spanned_by(
            &input.ident,
            format!("{owner} needs `response = Type`, or `notify` for one-way messages"),
        ),
        _ => {}
    }
    out
}

pub fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let cx = Ctxt::default();
    let attrs = parse_attrs(&cx, input);
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
            impl #impl_generics ::iproto::rpc::Notice for #ident #ty_generics #where_clause {
                const MSG: u32 = #msg;
            }
        },
    })
}
