//! The typed client of a service: `FooClient<S: Sender>`, one method per trait method (plus a
//! `_with` variant taking `CallOptions` for calls that expect a reply).

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::{Method, Reply, Service};

pub fn render(s: &Service) -> TokenStream {
    let vis = &s.item.vis;
    let client = &s.client;
    let trait_ = &s.item.ident;
    let doc = format!(
        "Typed client of [`{trait_}`]: one method per service method, over any \
         [`Sender`](::iproto::Sender) (a `Channel`, a `Pool`)."
    );
    let methods = s.methods.iter().map(method);
    quote! {
        #[doc = #doc]
        #[derive(Debug, Clone)]
        #vis struct #client<S> {
            sender: S,
        }

        impl<S: ::iproto::Sender> #client<S> {
            /// A client sending through `sender`.
            #vis fn new(sender: S) -> Self {
                #client { sender }
            }

            /// The underlying sender.
            #vis fn sender(&self) -> &S {
                &self.sender
            }

            /// Gives the sender back.
            #vis fn into_sender(self) -> S {
                self.sender
            }

            #(#methods)*
        }
    }
}

fn method(m: &Method) -> TokenStream {
    let Method { ident, msg, req, .. } = m;
    let docs: Vec<_> = m.docs().collect();
    let output = m.output();
    // The call future is returned as is, never captured by an `async` block and awaited
    // there: that stores it twice and doubles the future's size.
    let (result, call) = match &m.reply {
        Reply::None => {
            return quote! {
                #(#docs)*
                pub fn #ident<'a>(&'a self, req: &#req)
                    -> impl ::core::future::Future<Output = ::core::result::Result<(), ::iproto::rpc::CallError>>
                        + ::core::marker::Send + 'a
                {
                    ::iproto::rpc::notify(&self.sender, #msg, req)
                }
            };
        }
        Reply::Envelope { ok, err, .. } => (
            quote!(::core::result::Result<#ok, ::iproto::rpc::CallError<#err>>),
            quote!(::iproto::rpc::call_flat::<S, #req, #ok, #err>(&self.sender, #msg, req, options)),
        ),
        Reply::Raw(ty) => (
            quote!(::core::result::Result<#ty, ::iproto::rpc::CallError>),
            quote!(::iproto::rpc::call::<S, #req, #output>(&self.sender, #msg, req, options)),
        ),
    };
    let with = format_ident!("{}_with", ident);
    let with_doc = format!("[`{ident}`](Self::{ident}) with per-call options (timeout override).");
    quote! {
        #(#docs)*
        pub fn #ident<'a>(&'a self, req: &#req)
            -> impl ::core::future::Future<Output = #result> + ::core::marker::Send + 'a
        {
            self.#with(req, ::iproto::CallOptions::default())
        }

        #[doc = #with_doc]
        pub fn #with<'a>(&'a self, req: &#req, options: ::iproto::CallOptions)
            -> impl ::core::future::Future<Output = #result> + ::core::marker::Send + 'a
        {
            #call
        }
    }
}
