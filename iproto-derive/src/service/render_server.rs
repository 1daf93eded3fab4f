//! The server of a service: `FooServer<T: Foo>` is a `Handler` (pass it to `serve`), and
//! registers every method on a `ServeMux` of yours. Methods with owned arguments become typed
//! handlers (decoded before their future is made); methods with borrowed arguments are decoded
//! from the packet inside their own future, so the arguments point into the packet.

use proc_macro2::TokenStream;
use quote::quote;

use super::{lifetime, with_lifetime, Method, Service};

pub fn render(s: &Service) -> TokenStream {
    let vis = &s.item.vis;
    let server = &s.server;
    let trait_ = &s.item.ident;
    let doc = format!(
        "Serves a [`{trait_}`] implementation. It is a [`Handler`](::iproto::Handler) (pass it to \
         `serve`) answering unknown codes with [`RC_UNKNOWN_MSG`](::iproto::rpc::RC_UNKNOWN_MSG), \
         and [`register`](Self::register)s its methods on a [`ServeMux`](::iproto::ServeMux) of yours."
    );
    let name = server.to_string();
    let codes = s.methods.iter().map(|m| m.msg);
    let routes = s.methods.iter().map(|m| route(trait_, m));
    quote! {
        #[doc = #doc]
        #vis struct #server<__T> {
            service: ::std::sync::Arc<__T>,
            mux: ::std::sync::Arc<::iproto::ServeMux>,
        }

        impl<__T> ::core::clone::Clone for #server<__T> {
            fn clone(&self) -> Self {
                #server { service: ::std::sync::Arc::clone(&self.service), mux: ::std::sync::Arc::clone(&self.mux) }
            }
        }

        impl<__T> ::core::fmt::Debug for #server<__T> {
            fn fmt(&self, __f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                __f.debug_struct(#name)
                    .field("service", &::core::any::type_name::<__T>())
                    .field("codes", &[#(::iproto::__private::Code(#codes)),*])
                    .finish()
            }
        }

        impl<__T: #trait_ + ::core::marker::Send + ::core::marker::Sync + 'static> #server<__T> {
            /// Serves `service`.
            #vis fn new(service: __T) -> Self {
                Self::from_arc(::std::sync::Arc::new(service))
            }

            /// Serves a shared `service`.
            #vis fn from_arc(service: ::std::sync::Arc<__T>) -> Self {
                let mut mux = ::iproto::ServeMux::new();
                // Codes are distinct (checked by the macro), so an empty mux takes them all.
                let _ = Self::__routes(&service, &mut mux);
                mux.reject_unknown();
                #server { service, mux: ::std::sync::Arc::new(mux) }
            }

            /// The service.
            #vis fn service(&self) -> &::std::sync::Arc<__T> {
                &self.service
            }

            /// Registers every method on `mux`; fails if a code is already routed there. The
            /// mux's own choice for unknown codes stays.
            #vis fn register(&self, mux: &mut ::iproto::ServeMux)
                -> ::core::result::Result<(), ::iproto::mux::DuplicateRoute>
            {
                Self::__routes(&self.service, mux)
            }

            /// The server's mux: every method routed, unknown codes rejected.
            #vis fn into_mux(self) -> ::iproto::ServeMux {
                ::std::sync::Arc::try_unwrap(self.mux).unwrap_or_else(|__shared| (*__shared).clone())
            }

            fn __routes(__service: &::std::sync::Arc<__T>, __mux: &mut ::iproto::ServeMux)
                -> ::core::result::Result<(), ::iproto::mux::DuplicateRoute>
            {
                #(#routes)*
                ::core::result::Result::Ok(())
            }
        }

        impl<__T: #trait_ + ::core::marker::Send + ::core::marker::Sync + 'static> ::iproto::Handler for #server<__T> {
            type Reply = <::iproto::ServeMux as ::iproto::Handler>::Reply;

            fn handle(&self, __packet: ::iproto::Packet, __channel: ::iproto::Channel)
                -> impl ::core::future::Future<Output = Self::Reply> + ::core::marker::Send
            {
                ::iproto::Handler::handle(&*self.mux, __packet, __channel)
            }

            /// The route's own started future, as the mux starts it: no second box.
            fn start(self: &::std::sync::Arc<Self>, __packet: ::iproto::Packet, __channel: ::iproto::Channel)
                -> ::iproto::channel::Started
            {
                ::iproto::Handler::start(&self.mux, __packet, __channel)
            }
        }
    }
}

/// One method's route. A handler type rather than a closure: its future borrows the service
/// from the route instead of cloning the shared `Arc` (a contended atomic) on every request.
fn route(trait_: &syn::Ident, m: &Method) -> TokenStream {
    let Method { ident, msg, .. } = m;
    let output = m.output();
    let pattern = m.body_pattern();
    let call_args = m.params.iter().map(|p| {
        let name = &p.name;
        if p.context {
            quote!(__cx)
        } else {
            quote!(#name)
        }
    });
    let reply = !m.notify;
    if m.borrowed() {
        let b = lifetime("'__b");
        let body = super::nest(
            m.args()
                .map(|a| {
                    let ty = with_lifetime(&a.ty, &b);
                    quote!(#ty)
                })
                .collect(),
        );
        return quote! {
            {
                struct __Route<__T>(::std::sync::Arc<__T>);
                impl<__T: #trait_ + ::core::marker::Send + ::core::marker::Sync + 'static>
                    ::iproto::__private::BorrowedHandler for __Route<__T>
                {
                    type Reply = #output;
                    fn call<#b>(&#b self, __body: &#b [u8], __cx: ::iproto::rpc::Context)
                        -> ::core::result::Result<
                            impl ::core::future::Future<Output = #output> + ::core::marker::Send + #b,
                            ::iproto::DecodeError,
                        >
                    {
                        let #pattern: #body = ::iproto::Reader::new(__body).read_exact(::iproto::Mode::Fixed)?;
                        ::core::result::Result::Ok(<__T as #trait_>::#ident(&*self.0, #(#call_args),*))
                    }
                }
                ::iproto::__private::route_borrowed::<_, #reply>(__mux, #msg, __Route(::std::sync::Arc::clone(__service)))?;
            }
        };
    }
    let body = m.body_type();
    let register = if m.notify {
        quote!(handle_typed_notification::<#body, _>)
    } else {
        quote!(handle_typed::<#body, #output, _>)
    };
    quote! {
        {
            struct __Route<__T>(::std::sync::Arc<__T>);
            impl<__T: #trait_ + ::core::marker::Send + ::core::marker::Sync + 'static>
                ::iproto::rpc::TypedHandler<#body, #output> for __Route<__T>
            {
                fn call(&self, __req: #body, __cx: ::iproto::rpc::Context)
                    -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
                {
                    let #pattern = __req;
                    <__T as #trait_>::#ident(&*self.0, #(#call_args),*)
                }
            }
            __mux.#register(#msg, __Route(::std::sync::Arc::clone(__service)))?;
        }
    }
}
