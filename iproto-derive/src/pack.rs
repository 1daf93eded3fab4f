//! `#[derive(IprotoPack)]`: writes the fields in declaration order, each in its own mode (the
//! mode handed to the struct is ignored); enums write their tag first, `ServiceError` enums
//! only the variant's fields (the envelope writes the code).

use proc_macro2::{Literal, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::DeriveInput;

use crate::attr::{FieldCodec, TagType};
use crate::model::{self, Container, Data, Derive, Field, Fields, Style};

pub fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let cont = model::from_input(input, Derive::Codec)?;
    Ok(render(&cont))
}

/// The `IprotoPack` impl of `cont` (also used by `#[derive(ServiceError)]`).
pub fn render(cont: &Container) -> TokenStream {
    let ident = cont.ident;
    let generics = cont.bounded_generics(quote!(::iproto::IprotoPack));
    let (impl_generics, _, where_clause) = generics.split_for_impl();
    let (_, ty_generics, _) = cont.generics.split_for_impl();
    let (body, hint) = match &cont.data {
        Data::Struct(fields) => struct_body(fields),
        Data::Enum { tag, variants } => enum_body(Some(*tag), variants),
        Data::Errors(variants) => enum_body(None, variants),
    };
    quote! {
        #[automatically_derived]
        impl #impl_generics ::iproto::IprotoPack for #ident #ty_generics #where_clause {
            #[inline]
            fn pack<__B: ::iproto::bytes::BufMut>(
                &self,
                __buf: &mut __B,
                _: ::iproto::Mode,
            ) -> ::core::result::Result<(), ::iproto::PackError> {
                #body
            }

            #[inline]
            fn size_hint(&self, _: ::iproto::Mode) -> usize {
                #hint
            }
        }
    }
}

fn struct_body(fields: &Fields) -> (TokenStream, TokenStream) {
    let access = |f: &Field| {
        let member = &f.member;
        quote!(&self.#member)
    };
    let writes = fields.packed().map(|f| write_field(f, &access(f)));
    let hints = fields.packed().map(|f| field_hint(f, &access(f)));
    (quote!(#(#writes)* ::core::result::Result::Ok(())), quote!(0usize #(+ #hints)*))
}

/// `tag` is `None` for a `ServiceError` enum, whose code is written by the envelope.
fn enum_body(tag: Option<TagType>, variants: &[model::Variant]) -> (TokenStream, TokenStream) {
    let mut arms = Vec::new();
    let mut hint_arms = Vec::new();
    for v in variants {
        let pattern = variant_pattern(v.ident, &v.fields);
        let tag_write = tag.map(|t| write_tag(t, v.tag));
        let tag_len = tag.map_or_else(|| quote!(0usize), |t| tag_len(t, v.tag));
        let binding = |f: &Field| {
            let b = &f.binding;
            quote!(#b)
        };
        let writes = v.fields.packed().map(|f| write_field(f, &binding(f)));
        let hints = v.fields.packed().map(|f| field_hint(f, &binding(f)));
        arms.push(quote!(#pattern => { #tag_write #(#writes)* }));
        hint_arms.push(quote!(#pattern => #tag_len #(+ #hints)*));
    }
    (
        quote! {
            match self { #(#arms)* }
            ::core::result::Result::Ok(())
        },
        quote!(match self { #(#hint_arms,)* }),
    )
}

/// `Self::V { a: __f0, .. }`, `Self::V(__f0, _)` or `Self::V`, binding the packed fields.
fn variant_pattern(ident: &syn::Ident, fields: &Fields) -> TokenStream {
    match fields.style {
        Style::Unit => quote!(Self::#ident),
        Style::Named => {
            let binds = fields.packed().map(|f| {
                let (member, b) = (&f.member, &f.binding);
                quote!(#member: #b)
            });
            quote!(Self::#ident { #(#binds,)* .. })
        }
        Style::Tuple => {
            let binds = fields.list.iter().map(|f| if f.is_packed() { f.binding.to_token_stream() } else { quote!(_) });
            quote!(Self::#ident(#(#binds),*))
        }
    }
}

/// Writes one field; `value` is an expression of type `&FieldType`. Spanned at the field's
/// type, so that a type without `IprotoPack` is reported at the field.
fn write_field(f: &Field, value: &TokenStream) -> TokenStream {
    let mode = f.mode;
    let ty = f.ty;
    match &f.codec {
        FieldCodec::Plain => quote_spanned!(ty.span()=> <#ty as ::iproto::IprotoPack>::pack(#value, __buf, #mode)?;),
        FieldCodec::Elem(elem) => {
            quote_spanned!(ty.span()=> ::iproto::encoding::seq::pack(#value, __buf, #mode, #elem)?;)
        }
        FieldCodec::With(path) => quote!(#path::pack(#value, __buf, #mode)?;),
        FieldCodec::Skip => quote!(),
    }
}

fn field_hint(f: &Field, value: &TokenStream) -> TokenStream {
    let mode = f.mode;
    match &f.codec {
        FieldCodec::Plain | FieldCodec::Elem(_) => {
            let ty = f.ty;
            quote_spanned!(ty.span()=> <#ty as ::iproto::IprotoPack>::size_hint(#value, #mode))
        }
        FieldCodec::With(_) | FieldCodec::Skip => quote!(0usize),
    }
}

fn write_tag(ty: TagType, tag: u64) -> TokenStream {
    // The model checked that `tag` fits `ty`.
    let fixed = |lit: Literal| quote!(::iproto::IprotoPack::pack(&#lit, __buf, ::iproto::Mode::Fixed)?;);
    match ty {
        TagType::U8 => fixed(Literal::u8_suffixed(tag as u8)),
        TagType::U16 => fixed(Literal::u16_suffixed(tag as u16)),
        TagType::U32 => fixed(Literal::u32_suffixed(tag as u32)),
        TagType::Ber => {
            let lit = Literal::u64_suffixed(tag);
            quote!(::iproto::encoding::ber::put(__buf, #lit);)
        }
    }
}

fn tag_len(ty: TagType, tag: u64) -> TokenStream {
    match ty {
        TagType::U8 => quote!(1usize),
        TagType::U16 => quote!(2usize),
        TagType::U32 => quote!(4usize),
        TagType::Ber => {
            let lit = Literal::u64_suffixed(tag);
            quote!(::iproto::encoding::ber::encoded_len(#lit))
        }
    }
}
