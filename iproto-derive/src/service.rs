//! `#[service]`: reads a trait of `async fn`s tagged `#[iproto(msg = ..)]` into a validated
//! model (every mistake reported, each naming its method), then renders the `Send` trait
//! here, the client in `render_client` and the server adapter in `render_server`.

mod render_client;
mod render_server;

use std::cell::Cell;
use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::{
    Attribute, FnArg, GenericArgument, Ident, ItemTrait, LitInt, Pat, PathArguments, ReturnType, TraitItem, Type,
};

use crate::attr::Ctxt;
use crate::request::parse_msg;

/// A service trait, validated.
pub struct Service {
    pub item: ItemTrait,
    pub methods: Vec<Method>,
    pub client: Ident,
    pub server: Ident,
}

/// One method of the service.
pub struct Method {
    pub ident: Ident,
    /// Everything but `#[iproto]`, kept on the trait method.
    pub attrs: Vec<Attribute>,
    pub msg: u32,
    pub notify: bool,
    /// Whether the handler takes an `iproto::rpc::Context` before the request.
    pub context: bool,
    pub arg: Ident,
    pub req: Type,
    pub reply: Reply,
}

/// What a method answers.
pub enum Reply {
    /// Nothing: a one-way message.
    None,
    /// `Result<T, E>`: the return-code envelope; the client flattens `E` into its error.
    Envelope { full: Box<Type>, err: Box<Type>, ok: Box<Type> },
    /// Any other type, sent as its raw body.
    Raw(Box<Type>),
}

impl Method {
    /// The type the handler returns: `()` for one-way messages.
    pub fn output(&self) -> TokenStream {
        match &self.reply {
            Reply::None => quote!(()),
            Reply::Envelope { full, .. } | Reply::Raw(full) => quote!(#full),
        }
    }

    /// Only the `#[doc]` attributes, for the generated client methods.
    pub fn docs(&self) -> impl Iterator<Item = &Attribute> {
        self.attrs.iter().filter(|a| a.path().is_ident("doc"))
    }
}

pub fn expand(args: TokenStream, input: TokenStream) -> syn::Result<TokenStream> {
    if !args.is_empty() {
        return Err(syn::Error::new_spanned(args, "#[iproto::service] takes no arguments"));
    }
    let item: ItemTrait = syn::parse2(input)?;
    let service = from_trait(item)?;
    let trait_ = render_trait(&service);
    let client = render_client::render(&service);
    let server = render_server::render(&service);
    Ok(quote! { #trait_ #client #server })
}

fn from_trait(mut item: ItemTrait) -> syn::Result<Service> {
    let cx = Ctxt::default();
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        cx.error_spanned_by(&item.generics, "a service trait cannot be generic");
    }
    let mut methods = Vec::new();
    for trait_item in std::mem::take(&mut item.items) {
        match trait_item {
            TraitItem::Fn(f) => methods.extend(method(&cx, f)),
            other => cx.error_spanned_by(other, "a service trait holds only `async fn` methods"),
        }
    }
    let mut codes: HashMap<u32, &Ident> = HashMap::new();
    for m in &methods {
        if let Some(first) = codes.insert(m.msg, &m.ident) {
            cx.error_spanned_by(
                &m.ident,
                format!("`{}` uses message code {:#x}, already used by `{first}`", m.ident, m.msg),
            );
            codes.insert(m.msg, first);
        }
    }
    cx.check()?;
    let client = format_ident!("{}Client", item.ident);
    let server = format_ident!("{}Server", item.ident);
    Ok(Service { item, methods, client, server })
}

/// Reads one method, recording every mistake; `None` if it cannot be used.
fn method(cx: &Ctxt, f: syn::TraitItemFn) -> Option<Method> {
    let ident = f.sig.ident.clone();
    let name = format!("`{ident}`");
    let (mut msg, mut notify, ok) = (None, false, Cell::new(true));
    let fail = |span: &dyn quote::ToTokens, text: String| {
        cx.error_spanned_by(span.to_token_stream(), text);
        ok.set(false);
    };
    let mut attrs = Vec::new();
    for attr in f.attrs {
        if !attr.path().is_ident("iproto") {
            attrs.push(attr);
            continue;
        }
        let res = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("msg") {
                let lit: LitInt = meta.value()?.parse()?;
                msg = Some(parse_msg(&lit, &name)?);
            } else if meta.path.is_ident("notify") {
                notify = true;
            } else {
                return Err(meta.error(format!("unknown iproto attribute on {name}; expected `msg` or `notify`")));
            }
            Ok(())
        });
        if let Err(e) = res {
            cx.syn_error(e);
            ok.set(false);
            msg = msg.or(Some(0));
        }
    }
    if msg.is_none() {
        fail(&ident, format!("{name} needs a message code: #[iproto(msg = 0x10)]"));
    }
    if f.sig.asyncness.is_none() {
        fail(&f.sig.fn_token, format!("{name} must be an `async fn`"));
    }
    if let Some(body) = &f.default {
        fail(body, format!("{name} cannot have a default body in a service trait"));
    }
    if !f.sig.generics.params.is_empty() || f.sig.generics.where_clause.is_some() {
        fail(&f.sig.generics, format!("{name} cannot be generic"));
    }
    let mut inputs = f.sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
        Some(other) => fail(other, format!("{name} must take `&self` first")),
        None => fail(&f.sig, format!("{name} must take `&self` first")),
    }
    let typed: Vec<&syn::PatType> = inputs
        .filter_map(|a| match a {
            FnArg::Typed(t) => Some(t),
            FnArg::Receiver(_) => None,
        })
        .collect();
    let (context, req) = match typed.as_slice() {
        [req] => (false, Some(*req)),
        [_cx, req] => (true, Some(*req)),
        _ => {
            fail(
                &f.sig.inputs,
                format!(
                    "{name} takes `&self` and one request argument (optionally after a `Context`), found {} argument(s)",
                    typed.len()
                ),
            );
            (false, None)
        }
    };
    let reply = match (&f.sig.output, notify) {
        (ReturnType::Default, true) => Reply::None,
        (ReturnType::Type(_, ty), true) => {
            fail(ty, format!("{name} is `notify`: one-way messages return nothing"));
            Reply::None
        }
        (ReturnType::Default, false) => Reply::Raw(Box::new(syn::parse_quote!(()))),
        (ReturnType::Type(_, ty), false) => reply(ty),
    };
    let req = req?;
    if !ok.get() {
        return None;
    }
    let arg = match &*req.pat {
        Pat::Ident(p) => p.ident.clone(),
        _ => Ident::new("req", Span::call_site()),
    };
    Some(Method { ident, attrs, msg: msg.unwrap_or_default(), notify, context, arg, req: (*req.ty).clone(), reply })
}

/// `Result<T, E>` (two arguments, last segment `Result`) is the envelope; anything else raw.
fn reply(ty: &Type) -> Reply {
    if let Type::Path(p) = ty {
        if let Some(last) = p.path.segments.last() {
            if let (true, PathArguments::AngleBracketed(args)) = (last.ident == "Result", &last.arguments) {
                let types: Vec<&Type> = args
                    .args
                    .iter()
                    .filter_map(|a| match a {
                        GenericArgument::Type(t) => Some(t),
                        _ => None,
                    })
                    .collect();
                if let [ok, err] = types.as_slice() {
                    return Reply::Envelope {
                        full: Box::new(ty.clone()),
                        ok: Box::new((*ok).clone()),
                        err: Box::new((*err).clone()),
                    };
                }
            }
        }
    }
    Reply::Raw(Box::new(ty.clone()))
}

/// The trait with each `async fn` rewritten to return `impl Future + Send`, so that handlers
/// can run on the multi-threaded runtime.
fn render_trait(s: &Service) -> TokenStream {
    let ItemTrait { attrs, vis, unsafety, trait_token, ident, supertraits, colon_token, .. } = &s.item;
    let methods = s.methods.iter().map(|m| {
        let Method { ident, attrs, arg, req, .. } = m;
        let output = m.output();
        let cx = m.context.then(|| quote!(cx: ::iproto::rpc::Context,));
        quote! {
            #(#attrs)*
            fn #ident(&self, #cx #arg: #req)
                -> impl ::core::future::Future<Output = #output> + ::core::marker::Send;
        }
    });
    quote! {
        #(#attrs)*
        #vis #unsafety #trait_token #ident #colon_token #supertraits {
            #(#methods)*
        }
    }
}
