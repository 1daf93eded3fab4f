//! `#[service]`: reads a trait of `async fn`s tagged `#[iproto(msg = ..)]` into a validated
//! model (every mistake reported at the method or parameter it concerns), then renders the
//! `Send` trait here, the client in `render_client` and the server in `render_server`.
//!
//! A method is `async fn name(&self, <params>) [-> Reply]`. A parameter whose type is
//! `Context` (`Context`, `rpc::Context` or `iproto::rpc::Context`) is the handler's context,
//! wherever it stands; every other parameter is an argument. The arguments travel as one body:
//! their encodings concatenated in declaration order (a tuple's encoding; nested tuples of at
//! most eight, which encode the same).

mod render_client;
mod render_server;

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, ToTokens};
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{
    Attribute, FnArg, GenericArgument, GenericParam, Generics, Ident, ItemTrait, Lifetime, Pat, PathArguments,
    ReturnType, TraitItem, Type,
};

use crate::attr::{Ctxt, MethodAttrs};

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
    /// The method's lifetime parameters (for borrowed arguments).
    pub generics: Generics,
    /// `&self` as written (`&'a self` when arguments borrow for `'a`).
    pub receiver: syn::Receiver,
    /// In declaration order, the context included.
    pub params: Vec<Param>,
    pub reply: Reply,
}

/// A parameter after `&self`.
pub struct Param {
    /// The name as written (`_` becomes `__argN`).
    pub name: Ident,
    pub ty: Type,
    /// Whether this is the `Context`.
    pub context: bool,
}

/// What a method answers.
pub enum Reply {
    /// Nothing: a one-way message.
    None,
    /// A `Result`: the return-code envelope; the client folds `err` into its error.
    Envelope { full: Box<Type>, ok: Box<Type>, err: Box<Type> },
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

    /// The arguments (every parameter but the context), in order.
    pub fn args(&self) -> impl Iterator<Item = &Param> {
        self.params.iter().filter(|p| !p.context)
    }

    /// Whether an argument borrows (a reference or a lifetime in its type): such requests are
    /// decoded from the packet in place, in the handler's own future.
    pub fn borrowed(&self) -> bool {
        struct Finds(bool);
        impl Visit<'_> for Finds {
            fn visit_lifetime(&mut self, _: &Lifetime) {
                self.0 = true;
            }
            fn visit_type_reference(&mut self, _: &syn::TypeReference) {
                self.0 = true;
            }
        }
        let mut finds = Finds(false);
        self.args().for_each(|a| finds.visit_type(&a.ty));
        finds.0
    }

    /// The request body's type: the one argument's, `()` for none, else a tuple of them.
    pub fn body_type(&self) -> TokenStream {
        nest(self.args().map(|a| a.ty.to_token_stream()).collect())
    }

    /// The pattern binding the body's parts to the argument names.
    pub fn body_pattern(&self) -> TokenStream {
        nest(self.args().map(|a| a.name.to_token_stream()).collect())
    }
}

/// One item as itself, none as `()`, several as a tuple, nested so that no tuple holds more
/// than eight (the codec's largest tuple): `(a, .., g, (h, ..))` encodes as the flat sequence.
pub fn nest(items: Vec<TokenStream>) -> TokenStream {
    match items.len() {
        0 => quote!(()),
        1 => items.into_iter().next().unwrap_or_default(),
        2..=8 => quote!((#(#items,)*)),
        _ => {
            let mut items = items;
            let rest = nest(items.split_off(7));
            quote!((#(#items,)* #rest,))
        }
    }
}

/// `ty` with every lifetime (and every reference's elided one) replaced by `lt`: the type an
/// argument decodes as from a body borrowed for `lt`.
pub fn with_lifetime(ty: &Type, lt: &Lifetime) -> Type {
    struct Replace<'a>(&'a Lifetime);
    impl VisitMut for Replace<'_> {
        fn visit_lifetime_mut(&mut self, l: &mut Lifetime) {
            if l.ident != "static" {
                *l = self.0.clone();
            }
        }
        fn visit_type_reference_mut(&mut self, r: &mut syn::TypeReference) {
            if r.lifetime.is_none() {
                r.lifetime = Some(self.0.clone());
            }
            syn::visit_mut::visit_type_reference_mut(self, r);
        }
    }
    let mut ty = ty.clone();
    Replace(lt).visit_type_mut(&mut ty);
    ty
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

const SHAPE: &str = "a service method is `async fn name(&self, args..) -> Reply`, \
                     with an optional `cx: Context` among the arguments";

/// Reads one method, recording every mistake at the part of the signature it concerns;
/// `None` if it cannot be used.
fn method(cx: &Ctxt, f: syn::TraitItemFn) -> Option<Method> {
    let errors_before = cx.error_count();
    let ident = f.sig.ident.clone();
    let name = format!("`{ident}`");
    let (iproto_attrs, attrs): (Vec<Attribute>, Vec<Attribute>) =
        f.attrs.into_iter().partition(|a| a.path().is_ident("iproto"));
    let method_attrs = MethodAttrs::from_ast(cx, &iproto_attrs);
    if !method_attrs.msg_written {
        cx.error_spanned_by(&ident, format!("{name} needs a message code: #[iproto(msg = 0x10)]"));
    }
    if f.sig.asyncness.is_none() {
        cx.error_spanned_by(f.sig.fn_token, format!("{name} must be an `async fn`"));
    }
    if let Some(body) = &f.default {
        cx.error_spanned_by(body, format!("{name} cannot have a default body in a service trait"));
    }
    for param in &f.sig.generics.params {
        if !matches!(param, GenericParam::Lifetime(_)) {
            cx.error_spanned_by(
                param,
                format!("{name} cannot be generic over types or constants; only lifetimes (for borrowed arguments)"),
            );
        }
    }
    if let Some(clause) = &f.sig.generics.where_clause {
        cx.error_spanned_by(clause, format!("{name} cannot have a `where` clause"));
    }
    if let Some(v) = &f.sig.variadic {
        cx.error_spanned_by(v, format!("{name} cannot be variadic"));
    }

    let mut inputs = f.sig.inputs.iter();
    let receiver = match inputs.next() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() && r.colon_token.is_none() => {
            Some(r.clone())
        }
        Some(other @ FnArg::Receiver(_)) => {
            cx.error_spanned_by(other, format!("{name} must take `&self`: {SHAPE}"));
            None
        }
        _ => {
            cx.error_spanned_by(&f.sig.ident, format!("{name} must take `&self` first: {SHAPE}"));
            None
        }
    };
    let mut params = Vec::new();
    for (i, input) in inputs.enumerate() {
        let FnArg::Typed(t) = input else { continue };
        params.push(param(cx, &name, i, t));
    }
    let contexts: Vec<&Param> = params.iter().filter(|p| p.context).collect();
    if let [_, extra, ..] = contexts.as_slice() {
        cx.error_spanned_by(&extra.ty, format!("{name} takes at most one `Context`"));
    }

    let reply = match (&f.sig.output, method_attrs.notify) {
        (ReturnType::Default, true) => Reply::None,
        (ReturnType::Type(_, ty), true) => {
            cx.error_spanned_by(ty, format!("{name} is `notify`: one-way messages return nothing"));
            Reply::None
        }
        (ReturnType::Default, false) => Reply::Raw(Box::new(syn::parse_quote!(()))),
        (ReturnType::Type(_, ty), false) => {
            if let Type::ImplTrait(_) = **ty {
                cx.error_spanned_by(ty, format!("{name} must return a concrete type; `impl Trait` cannot be packed"));
            }
            reply(ty, method_attrs.raw.is_some())
        }
    };
    let receiver = receiver?;
    if cx.error_count() > errors_before {
        return None;
    }
    Some(Method {
        ident,
        attrs,
        msg: method_attrs.msg.unwrap_or_default(),
        notify: method_attrs.notify,
        generics: f.sig.generics.clone(),
        receiver,
        params,
        reply,
    })
}

/// Reads the `i`th parameter after `&self`.
fn param(cx: &Ctxt, method: &str, i: usize, t: &syn::PatType) -> Param {
    let name = match &*t.pat {
        Pat::Ident(p) if p.subpat.is_none() => p.ident.clone(),
        Pat::Wild(_) => format_ident!("__arg{}", i),
        other => {
            cx.error_spanned_by(other, format!("{method}: a parameter is a plain name, not a pattern"));
            format_ident!("__arg{}", i)
        }
    };
    let ty = (*t.ty).clone();
    match &ty {
        Type::ImplTrait(_) => cx.error_spanned_by(
            &ty,
            format!("{method}: a parameter has a concrete type; `impl Trait` cannot be decoded"),
        ),
        Type::Reference(r) if is_context(&r.elem) => {
            cx.error_spanned_by(&ty, format!("{method}: take the context by value: `cx: Context`"))
        }
        _ => {}
    }
    Param { name, context: is_context(&ty), ty }
}

/// `Context`, `rpc::Context`, `iproto::rpc::Context` or `::iproto::rpc::Context`.
fn is_context(ty: &Type) -> bool {
    let Type::Path(p) = ty else { return false };
    if p.qself.is_some() {
        return false;
    }
    let segments: Vec<String> = p.path.segments.iter().map(|s| s.ident.to_string()).collect();
    let plain = p.path.segments.iter().all(|s| s.arguments.is_none());
    plain
        && matches!(
            segments.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
            ["Context"] | ["rpc", "Context"] | ["iproto", "rpc", "Context"]
        )
}

/// A type whose last segment is named `Result` or ends in `Result` (an alias such as
/// `KvResult<T>` or `kv::Result<T>`) is the envelope, unless the method says `raw`; the
/// written-out `Result<T, E>` names its parts directly, an alias is resolved through
/// `__private::Envelope` (a clear error if it is not a `Result`).
fn reply(ty: &Type, raw: bool) -> Reply {
    let Type::Path(p) = ty else { return Reply::Raw(Box::new(ty.clone())) };
    let Some(last) = p.path.segments.last() else { return Reply::Raw(Box::new(ty.clone())) };
    if raw || !last.ident.to_string().ends_with("Result") {
        return Reply::Raw(Box::new(ty.clone()));
    }
    if last.ident == "Result" {
        if let PathArguments::AngleBracketed(args) = &last.arguments {
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
    Reply::Envelope {
        full: Box::new(ty.clone()),
        ok: Box::new(
            syn::parse_quote_spanned!(syn::spanned::Spanned::span(ty)=> <#ty as ::iproto::__private::Envelope>::Ok),
        ),
        err: Box::new(
            syn::parse_quote_spanned!(syn::spanned::Spanned::span(ty)=> <#ty as ::iproto::__private::Envelope>::Err),
        ),
    }
}

/// The trait with each `async fn` rewritten to return `impl Future + Send`, so that handlers
/// can run on the multi-threaded runtime.
fn render_trait(s: &Service) -> TokenStream {
    let ItemTrait { attrs, vis, unsafety, trait_token, ident, supertraits, colon_token, .. } = &s.item;
    let methods = s.methods.iter().map(|m| {
        let Method { ident, attrs, generics, receiver, .. } = m;
        let output = m.output();
        let params = m.params.iter().map(|p| {
            let (name, ty) = (&p.name, &p.ty);
            quote!(#name: #ty)
        });
        quote! {
            #(#attrs)*
            fn #ident #generics (#receiver, #(#params),*)
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

/// A span-less placeholder for generated lifetimes.
pub fn lifetime(name: &str) -> Lifetime {
    Lifetime::new(name, Span::call_site())
}
