//! The typed client of a service: `FooClient<S: Sender>`, one method per trait method taking
//! the arguments by reference (plus a `_with` variant taking `CallOptions` for calls that
//! expect a reply).

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::{nest, Method, Reply, Service};

pub fn render(s: &Service) -> TokenStream {
    let vis = &s.item.vis;
    let client = &s.client;
    let trait_ = &s.item.ident;
    let doc = format!(
        "Typed client of [`{trait_}`]: one method per service method, over any \
         [`Sender`](::iproto::Sender) (a `Channel`, a `Pool`)."
    );
    let methods = s.methods.iter().map(|m| method(vis, m));
    quote! {
        #[doc = #doc]
        #[derive(Debug, Clone)]
        #vis struct #client<__S> {
            sender: __S,
        }

        impl<__S: ::iproto::Sender> #client<__S> {
            /// A client sending through `sender`.
            #vis fn new(sender: __S) -> Self {
                #client { sender }
            }

            /// The underlying sender.
            #vis fn sender(&self) -> &__S {
                &self.sender
            }

            /// Gives the sender back.
            #vis fn into_sender(self) -> __S {
                self.sender
            }

            #(#methods)*
        }
    }
}

fn method(vis: &syn::Visibility, m: &Method) -> TokenStream {
    let Method { ident, msg, .. } = m;
    let docs: Vec<_> = m.docs().collect();
    let lifetimes = m.generics.params.iter();
    let params: Vec<TokenStream> = m
        .args()
        .map(|a| {
            let (name, ty) = (&a.name, &a.ty);
            quote!(#name: &#ty)
        })
        .collect();
    let names: Vec<&syn::Ident> = m.args().map(|a| &a.name).collect();
    // The arguments are packed as one body: a tuple of references encodes as the arguments
    // one after the other.
    let body = match names.as_slice() {
        [one] => quote!(#one),
        _ => {
            let parts = nest(names.iter().map(|n| quote!(#n)).collect());
            quote!(&#parts)
        }
    };
    let options =
        if names.iter().any(|n| *n == "options") { format_ident!("__options") } else { format_ident!("options") };
    // The call future is returned as is, never captured by an `async` block and awaited
    // there: that stores it twice and doubles the future's size. The body is packed before
    // the future is made, by a function of its own, so that the future's type does not
    // mention the arguments' types and borrows only the client.
    let (result, call) = match &m.reply {
        Reply::None => {
            return quote! {
                #(#docs)*
                #[allow(clippy::too_many_arguments)]
                #vis fn #ident<'__a, #(#lifetimes,)*>(&'__a self, #(#params),*)
                    -> impl ::core::future::Future<Output = ::core::result::Result<(), ::iproto::rpc::CallError>>
                        + ::core::marker::Send + '__a
                {
                    ::iproto::__private::notify(&self.sender, #msg, ::iproto::__private::pack_body(#msg, #body))
                }
            };
        }
        // Spanned at the reply type, so that a reply type the codec cannot decode is reported
        // there.
        Reply::Envelope { full, ok, err } => (
            quote_spanned!(full.span()=> ::core::result::Result<#ok, ::iproto::rpc::CallError<#err>>),
            quote_spanned!(full.span()=> ::iproto::__private::call_flat::<__S, #ok, #err>(
                &self.sender, #msg, ::iproto::__private::pack_body(#msg, #body), #options,
            )),
        ),
        Reply::Raw(ty) => (
            quote_spanned!(ty.span()=> ::core::result::Result<#ty, ::iproto::rpc::CallError>),
            quote_spanned!(ty.span()=> ::iproto::__private::call::<__S, #ty>(
                &self.sender, #msg, ::iproto::__private::pack_body(#msg, #body), #options,
            )),
        ),
    };
    let with = format_ident!("{}_with", ident);
    let span = match &m.reply {
        Reply::Envelope { full, .. } => full.span(),
        Reply::Raw(ty) => ty.span(),
        Reply::None => ident.span(),
    };
    let returns = quote_spanned!(span=> impl ::core::future::Future<Output = #result> + ::core::marker::Send + '__a);
    let forward = quote_spanned!(span=> self.#with(#(#names,)* ::iproto::CallOptions::default()));
    let with_doc = format!("[`{ident}`](Self::{ident}) with per-call options (timeout override).");
    let lifetimes = m.generics.params.iter();
    let with_lifetimes = m.generics.params.iter();
    quote! {
        #(#docs)*
        #[allow(clippy::too_many_arguments)] // as many as the service method has
        #vis fn #ident<'__a, #(#lifetimes,)*>(&'__a self, #(#params),*)
            -> #returns
        {
            #forward
        }

        #[doc = #with_doc]
        #[allow(clippy::too_many_arguments)]
        #vis fn #with<'__a, #(#with_lifetimes,)*>(&'__a self, #(#params,)* #options: ::iproto::CallOptions)
            -> #returns
        {
            #call
        }
    }
}
