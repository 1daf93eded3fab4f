//! `#[derive(IprotoUnpack)]`: reads the fields in declaration order, each in its own mode, adds
//! the field to the error path on failure, and sums the fields' `min_size`. The impl is generic
//! over the input lifetime `'__de`, which outlives every lifetime of the type, so borrowed
//! fields (`&'a str`, `&'a [u8]`) point into the input and owned types decode from any input.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{DeriveInput, GenericParam, Lifetime, LifetimeParam, Type};

use crate::attr::{FieldCodec, TagType};
use crate::model::{self, Data, Derive, Field, Fields, Style, Variant};

pub fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let cont = model::from_input(input, Derive::Codec)?;
    let ident = cont.ident;
    let de = Lifetime::new("'__de", Span::call_site());
    let lifetimes: Vec<Lifetime> = cont.generics.lifetimes().map(|l| l.lifetime.clone()).collect();

    let mut generics = cont.bounded_generics(quote!(::iproto::IprotoUnpack<#de>));
    let mut de_param = LifetimeParam::new(de.clone());
    de_param.bounds.extend(lifetimes.iter().cloned());
    generics.params.insert(0, GenericParam::Lifetime(de_param));
    let (impl_generics, _, where_clause) = generics.split_for_impl();
    let (_, ty_generics, _) = cont.generics.split_for_impl();

    let gen = Gen { name: &cont.name, lifetimes: &lifetimes };
    let (body, min) = match &cont.data {
        Data::Struct(fields) => {
            let reads = gen.read_fields(fields, None);
            let construct = construct(quote!(Self), fields);
            (quote!(#reads ::core::result::Result::Ok(#construct)), gen.min_size(fields))
        }
        Data::Enum { tag, variants } => gen.enum_body(*tag, variants),
        Data::Errors(_) => unreachable!("only #[derive(ServiceError)] reads error enums"),
    };
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics ::iproto::IprotoUnpack<#de> for #ident #ty_generics #where_clause {
            #[inline]
            fn unpack(
                __r: &mut ::iproto::Reader<#de>,
                _: ::iproto::Mode,
            ) -> ::core::result::Result<Self, ::iproto::DecodeError> {
                #body
            }

            #[inline]
            fn min_size(_: ::iproto::Mode) -> usize {
                #min
            }
        }
    })
}

/// Generation context: the type name for error paths and the type's own lifetimes.
pub struct Gen<'a> {
    pub name: &'a str,
    pub lifetimes: &'a [Lifetime],
}

impl Gen<'_> {
    /// `let __fN: Ty = ...?;` for every field, in order. `variant` names the enum variant, which
    /// goes into the error path after the field.
    /// Reads from `__r: &mut Reader<'__de>`; a read is spanned at the field's type, so that a
    /// type without `IprotoUnpack` is reported at the field.
    pub fn read_fields(&self, fields: &Fields, variant: Option<&syn::Ident>) -> TokenStream {
        let name = self.name;
        let reads = fields.list.iter().map(|f| {
            let binding = &f.binding;
            let field_name = &f.name;
            let in_variant = variant.map(|v| {
                let v = v.to_string();
                quote!(.in_field(#name, #v))
            });
            let wrap = quote!(.map_err(|__e| __e.in_field(#name, #field_name) #in_variant)?);
            let ty = self.de_type(f.ty);
            let mode = f.mode;
            let span = f.ty.span();
            match &f.codec {
                FieldCodec::Plain => quote_spanned! {span=>
                    let #binding = <#ty as ::iproto::IprotoUnpack<'__de>>::unpack(__r, #mode) #wrap;
                },
                FieldCodec::Elem(elem) => quote_spanned! {span=>
                    let #binding: #ty = ::iproto::encoding::seq::unpack(__r, #mode, #elem) #wrap;
                },
                FieldCodec::With(path) => quote! {
                    let #binding: #ty = #path::unpack(__r, #mode) #wrap;
                },
                FieldCodec::Skip => quote! {
                    let #binding = ::core::default::Default::default();
                },
            }
        });
        quote!(#(#reads)*)
    }

    /// The sum of the packed fields' `min_size` (0 for `with` codecs, whose size is unknown).
    fn min_size(&self, fields: &Fields) -> TokenStream {
        let terms = fields.packed().filter(|f| !matches!(f.codec, FieldCodec::With(_))).map(|f| {
            let ty = self.de_type(f.ty);
            let mode = f.mode;
            quote_spanned!(f.ty.span()=> .saturating_add(<#ty as ::iproto::IprotoUnpack<'__de>>::min_size(#mode)))
        });
        quote!(0usize #(#terms)*)
    }

    fn enum_body(&self, tag: TagType, variants: &[Variant]) -> (TokenStream, TokenStream) {
        let name = self.name;
        let read_tag = match tag {
            TagType::U8 => quote!(::iproto::Reader::read_u8(__r).map(u64::from)),
            TagType::U16 => quote!(<u16 as ::iproto::IprotoUnpack>::unpack(__r, ::iproto::Mode::Fixed).map(u64::from)),
            TagType::U32 => quote!(<u32 as ::iproto::IprotoUnpack>::unpack(__r, ::iproto::Mode::Fixed).map(u64::from)),
            TagType::Ber => quote!(::iproto::Reader::read_ber(__r, 64, "u64")),
        };
        let tag_min = match tag {
            TagType::U8 | TagType::Ber => 1usize,
            TagType::U16 => 2,
            TagType::U32 => 4,
        };
        let arms = variants.iter().map(|v| {
            let tag = Literal::u64_suffixed(v.tag);
            let reads = self.read_fields(&v.fields, Some(v.ident));
            let ident = v.ident;
            let construct = construct(quote!(Self::#ident), &v.fields);
            quote!(#tag => { #reads ::core::result::Result::Ok(#construct) })
        });
        let mins = variants.iter().map(|v| self.min_size(&v.fields));
        let body = quote! {
            let __at = __r.position();
            let __tag: u64 = #read_tag.map_err(|__e| __e.in_type(#name))?;
            match __tag {
                #(#arms)*
                __other => ::core::result::Result::Err(::iproto::DecodeError::new(
                    ::iproto::DecodeErrorKind::UnknownTag { tag: __other, ty: #name },
                    __at,
                ).in_type(#name)),
            }
        };
        let min = quote! {
            let mut __min = usize::MAX;
            #(__min = __min.min(#mins);)*
            #tag_min + __min
        };
        (body, min)
    }

    /// `ty` with the type's own lifetimes replaced by `'__de`, the type the field decodes as
    /// (`&'a str` is read as `&'__de str` and shortened to `'a` by variance).
    fn de_type(&self, ty: &Type) -> Type {
        struct Replace<'a>(&'a [Lifetime]);
        impl VisitMut for Replace<'_> {
            fn visit_lifetime_mut(&mut self, lt: &mut Lifetime) {
                if self.0.contains(lt) {
                    *lt = Lifetime::new("'__de", lt.span());
                }
            }
        }
        let mut ty = ty.clone();
        Replace(self.lifetimes).visit_type_mut(&mut ty);
        ty
    }
}

/// `Self { a: __f0, b: __f1 }`, `Self(__f0, __f1)` or `Self`, from the bound field values.
pub fn construct(path: TokenStream, fields: &Fields) -> TokenStream {
    let bindings = fields.list.iter().map(|f| &f.binding);
    match fields.style {
        Style::Unit => path,
        Style::Tuple => quote!(#path(#(#bindings),*)),
        Style::Named => {
            let members = fields.list.iter().map(|f: &Field| &f.member);
            quote!(#path { #(#members: #bindings),* })
        }
    }
}
