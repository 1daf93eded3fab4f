//! `#[derive(ServiceError)]`: an error enum whose variants travel as return codes. Generates
//! `IprotoPack` (the variant's fields, in declaration order; the envelope writes the code) and
//! `ServiceError` (`code` from `#[iproto(code = N)]`, `decode` reading the fields back; an
//! unknown code is a `DecodeError`).

use proc_macro2::{Literal, Span, TokenStream};
use quote::quote;
use syn::{DeriveInput, Lifetime};

use crate::model::{self, Data, Derive};
use crate::unpack::{construct, Gen};

pub fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let cont = model::from_input(input, Derive::ServiceError)?;
    let Data::Errors(variants) = &cont.data else { unreachable!("the model reads an enum or reports it") };
    let pack = crate::pack::render(&cont);

    let ident = cont.ident;
    let name = &cont.name;
    let generics = cont.bounded_generics(quote!(::iproto::IprotoPack + for<'__de> ::iproto::IprotoUnpack<'__de>));
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let de = Lifetime::new("'__de", Span::call_site());
    let gen = Gen { name, lifetimes: &[] };

    let code_arms = variants.iter().map(|v| {
        let (variant, code) = (v.ident, Literal::u32_suffixed(v.tag as u32));
        quote!(Self::#variant { .. } => #code,)
    });
    let decode_arms = variants.iter().map(|v| {
        let code = Literal::u32_suffixed(v.tag as u32);
        let reads = gen.read_fields(&v.fields, Some(v.ident));
        let variant = v.ident;
        let value = construct(quote!(Self::#variant), &v.fields);
        quote!(#code => { #reads ::core::result::Result::Ok(#value) })
    });
    Ok(quote! {
        #pack

        #[automatically_derived]
        impl #impl_generics ::iproto::rpc::ServiceError for #ident #ty_generics #where_clause {
            #[inline]
            fn code(&self) -> u32 {
                match self { #(#code_arms)* }
            }

            fn decode<#de>(
                __code: u32,
                __r: &mut ::iproto::Reader<#de>,
            ) -> ::core::result::Result<Self, ::iproto::DecodeError> {
                match __code {
                    #(#decode_arms)*
                    __other => ::core::result::Result::Err(::iproto::DecodeError::new(
                        ::iproto::DecodeErrorKind::UnknownCode { code: __other, ty: #name },
                        __r.position(),
                    )),
                }
            }
        }
    })
}
