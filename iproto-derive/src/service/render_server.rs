//! The server adapter of a service: `FooServer<T: Foo>` registers every method on a
//! `ServeMux` (or builds one), each as a typed handler calling the trait method.

use proc_macro2::TokenStream;
use quote::quote;

use super::{Method, Service};

pub fn render(s: &Service) -> TokenStream {
    let vis = &s.item.vis;
    let server = &s.server;
    let trait_ = &s.item.ident;
    let doc = format!(
        "Serves a [`{trait_}`] implementation: registers each method's message code on a \
         [`ServeMux`](::iproto::ServeMux)."
    );
    let routes = s.methods.iter().map(|m| route(trait_, m));
    quote! {
        #[doc = #doc]
        #[derive(Debug)]
        #vis struct #server<T> {
            service: ::std::sync::Arc<T>,
        }

        impl<T> ::core::clone::Clone for #server<T> {
            fn clone(&self) -> Self {
                #server { service: ::std::sync::Arc::clone(&self.service) }
            }
        }

        impl<T: #trait_ + ::core::marker::Send + ::core::marker::Sync + 'static> #server<T> {
            /// Serves `service`.
            #vis fn new(service: T) -> Self {
                #server { service: ::std::sync::Arc::new(service) }
            }

            /// Serves a shared `service`.
            #vis fn from_arc(service: ::std::sync::Arc<T>) -> Self {
                #server { service }
            }

            /// Registers every method on `mux`; fails if a code is already routed there.
            #vis fn register(&self, mux: &mut ::iproto::ServeMux)
                -> ::core::result::Result<(), ::iproto::mux::DuplicateRoute>
            {
                #(#routes)*
                ::core::result::Result::Ok(())
            }

            /// A new mux routing every method of the service.
            #vis fn into_mux(self) -> ::iproto::ServeMux {
                let mut mux = ::iproto::ServeMux::new();
                // Codes are distinct (checked by the macro), so an empty mux takes them all.
                let _ = self.register(&mut mux);
                mux
            }
        }
    }
}

fn route(trait_: &syn::Ident, m: &Method) -> TokenStream {
    let Method { ident, msg, req, .. } = m;
    let output = m.output();
    let cx = m.context.then(|| quote!(cx,));
    let register =
        if m.notify { quote!(handle_typed_notice::<#req, _>) } else { quote!(handle_typed::<#req, #output, _>) };
    // A handler type rather than a closure: its future borrows the service from the route
    // instead of cloning the shared `Arc` (a contended atomic) on every request.
    quote! {
        {
            struct Route<T>(::std::sync::Arc<T>);
            impl<T: #trait_ + ::core::marker::Send + ::core::marker::Sync + 'static>
                ::iproto::rpc::TypedHandler<#req, #output> for Route<T>
            {
                fn call(&self, req: #req, cx: ::iproto::rpc::Context)
                    -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
                {
                    let _ = &cx;
                    <T as #trait_>::#ident(&*self.0, #cx req)
                }
            }
            mux.#register(#msg, Route(::std::sync::Arc::clone(&self.service)))?;
        }
    }
}
