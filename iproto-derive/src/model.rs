//! The validated model of a derive input: a struct's fields, an enum's tagged variants or a
//! `ServiceError` enum's coded variants, each field with its resolved wire mode and codec.
//! Built from `syn` and `attr`; the generators in `pack.rs`, `unpack.rs` and `error.rs` read
//! only this.

use syn::ext::IdentExt;
use syn::{Data as SynData, DeriveInput, Expr, Generics, Ident, Lit, Member, Type, UnOp};

use crate::attr::{
    Ctxt, EnumAttrs, ErrorVariantAttrs, FieldAttrs, FieldCodec, Mode, Place, StructAttrs, TagType, VariantAttrs,
};

/// Which derive reads the input: the codec derives, or `ServiceError`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Derive {
    Codec,
    ServiceError,
}

pub struct Container<'a> {
    pub ident: &'a Ident,
    /// The type name used in error paths.
    pub name: String,
    pub generics: &'a Generics,
    pub data: Data<'a>,
}

pub enum Data<'a> {
    Struct(Fields<'a>),
    Enum {
        tag: TagType,
        variants: Vec<Variant<'a>>,
    },
    /// A `ServiceError` enum: each variant's `tag` is its return code, which the envelope
    /// writes, so the variant's body is its fields only.
    Errors(Vec<Variant<'a>>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Named,
    Tuple,
    Unit,
}

pub struct Fields<'a> {
    pub style: Style,
    pub list: Vec<Field<'a>>,
}

pub struct Field<'a> {
    /// `self.<member>`: a name or a tuple index.
    pub member: Member,
    /// The name used in error paths (`"city"`, `"0"`).
    pub name: String,
    pub ty: &'a Type,
    /// The local variable the generated code binds the field's value to.
    pub binding: Ident,
    /// The mode the field (or, with `elem`, its count) is encoded in.
    pub mode: Mode,
    pub codec: FieldCodec,
}

impl Field<'_> {
    /// Whether the field appears on the wire.
    pub fn is_packed(&self) -> bool {
        !matches!(self.codec, FieldCodec::Skip)
    }
}

pub struct Variant<'a> {
    pub ident: &'a Ident,
    pub fields: Fields<'a>,
    pub tag: u64,
}

impl<'a> Container<'a> {
    /// Reads and validates `input` for `derive`; every problem is recorded in `cx`.
    pub fn from_ast(cx: &Ctxt, input: &'a DeriveInput, derive: Derive) -> Option<Self> {
        let data = match (&input.data, derive) {
            (SynData::Struct(s), Derive::Codec) => {
                let attrs = StructAttrs::from_ast(cx, &input.attrs, Place::Struct);
                let default = if attrs.ber { Mode::Ber } else { Mode::Fixed };
                Data::Struct(fields_from_ast(cx, &s.fields, default))
            }
            (SynData::Enum(e), Derive::Codec) => {
                let attrs = EnumAttrs::from_ast(cx, &input.ident, &input.attrs);
                // A missing or malformed tag is already reported; BER accepts every tag value.
                let tag = attrs.tag.unwrap_or(TagType::Ber);
                if e.variants.is_empty() {
                    cx.error_spanned_by(&input.ident, "an iproto enum needs at least one variant");
                }
                Data::Enum { tag, variants: variants_from_ast(cx, e, tag) }
            }
            (SynData::Enum(e), Derive::ServiceError) => {
                let attrs = StructAttrs::from_ast(cx, &input.attrs, Place::ErrorEnum);
                let default = if attrs.ber { Mode::Ber } else { Mode::Fixed };
                if e.variants.is_empty() {
                    cx.error_spanned_by(&input.ident, "a ServiceError enum needs at least one variant");
                }
                if let Some(lt) = input.generics.lifetimes().next() {
                    cx.error_spanned_by(
                        lt,
                        "a ServiceError is decoded from any reply buffer, so it cannot borrow; \
                         use owned fields (String, Vec<u8>, Bytes)",
                    );
                }
                Data::Errors(error_variants_from_ast(cx, e, default))
            }
            (SynData::Struct(s), Derive::ServiceError) => {
                cx.error_spanned_by(
                    s.struct_token,
                    "#[derive(ServiceError)] works on enums: one variant per return code, \
                     each with #[iproto(code = N)]",
                );
                return None;
            }
            (SynData::Union(u), _) => {
                cx.error_spanned_by(u.union_token, "iproto derives do not support unions");
                return None;
            }
        };
        Some(Container { ident: &input.ident, name: input.ident.unraw().to_string(), generics: &input.generics, data })
    }
}

fn fields_from_ast<'a>(cx: &Ctxt, fields: &'a syn::Fields, default: Mode) -> Fields<'a> {
    let style = match fields {
        syn::Fields::Named(_) => Style::Named,
        syn::Fields::Unnamed(_) => Style::Tuple,
        syn::Fields::Unit => Style::Unit,
    };
    let list = fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let attrs = FieldAttrs::from_ast(cx, &f.attrs);
            let (member, name) = match &f.ident {
                Some(ident) => (Member::Named(ident.clone()), ident.unraw().to_string()),
                None => (Member::Unnamed(i.into()), i.to_string()),
            };
            Field {
                member,
                name,
                ty: &f.ty,
                binding: quote::format_ident!("__f{}", i),
                mode: attrs.mode.unwrap_or(default),
                codec: attrs.codec,
            }
        })
        .collect();
    Fields { style, list }
}

/// Resolves each variant's tag: `tag_value`, else the explicit discriminant, else the previous
/// tag plus one (Rust's own rule, so plain enums get 0, 1, 2, ...). Duplicates and tags that
/// do not fit the tag type are errors.
fn variants_from_ast<'a>(cx: &Ctxt, e: &'a syn::DataEnum, tag_type: TagType) -> Vec<Variant<'a>> {
    // `None` once a tag was unusable: implicit successors are then not checked, so one mistake
    // gives one error.
    let mut next: Option<u64> = Some(0);
    let mut seen: Vec<(u64, &Ident)> = Vec::new();
    let mut out = Vec::new();
    for v in &e.variants {
        let attrs = VariantAttrs::from_ast(cx, &v.attrs);
        let tag = match (attrs.tag_value, &v.discriminant) {
            (Some((value, _)), _) => Some(value),
            (None, Some((_, expr))) => discriminant_value(cx, expr),
            (None, None) => {
                if next.is_none() && seen.last().is_some_and(|(t, _)| *t == u64::MAX) {
                    cx.error_spanned_by(&v.ident, "the implicit tag after u64::MAX overflows; add `tag_value`");
                }
                next
            }
        };
        let fits = tag.filter(|&t| t <= tag_type.max());
        match (tag, fits) {
            (Some(t), None) => {
                let span = attrs.tag_value.map_or_else(|| syn::spanned::Spanned::span(&v.ident), |(_, s)| s);
                cx.error_at(
                    span,
                    format!("tag {t} of variant `{}` does not fit the tag type {}", v.ident, tag_type.name()),
                );
            }
            (_, Some(t)) => {
                if let Some((_, other)) = seen.iter().find(|(seen, _)| *seen == t) {
                    cx.error_spanned_by(
                        &v.ident,
                        format!("variant `{}` has tag {t}, already used by `{other}`", v.ident),
                    );
                }
                seen.push((t, &v.ident));
            }
            (None, None) => {}
        }
        next = fits.and_then(|t| t.checked_add(1));
        let fields = fields_from_ast(cx, &v.fields, Mode::Fixed);
        out.push(Variant { ident: &v.ident, fields, tag: fits.unwrap_or(0) });
    }
    out
}

fn discriminant_value(cx: &Ctxt, expr: &Expr) -> Option<u64> {
    match expr {
        Expr::Lit(syn::ExprLit { lit: Lit::Int(lit), .. }) => match lit.base10_parse::<u64>() {
            Ok(v) => Some(v),
            Err(e) => {
                cx.syn_error(e);
                None
            }
        },
        Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => {
            cx.error_spanned_by(expr, "a negative discriminant cannot be an iproto tag; use #[iproto(tag_value = N)]");
            None
        }
        _ => {
            cx.error_spanned_by(
                expr,
                "only integer literal discriminants can be iproto tags; use #[iproto(tag_value = N)]",
            );
            None
        }
    }
}

/// Each variant's return code, from `#[iproto(code = N)]`; codes must be distinct.
fn error_variants_from_ast<'a>(cx: &Ctxt, e: &'a syn::DataEnum, default: Mode) -> Vec<Variant<'a>> {
    let mut seen: Vec<(u32, &Ident)> = Vec::new();
    let mut out = Vec::new();
    for v in &e.variants {
        let attrs = ErrorVariantAttrs::from_ast(cx, &v.ident, &v.attrs);
        if let Some((code, span)) = attrs.code {
            if let Some((_, other)) = seen.iter().find(|(seen, _)| *seen == code) {
                cx.error_at(span, format!("variant `{}` has code {code}, already used by `{other}`", v.ident));
            }
            seen.push((code, &v.ident));
        }
        let fields = fields_from_ast(cx, &v.fields, default);
        out.push(Variant { ident: &v.ident, fields, tag: attrs.code.map_or(0, |(c, _)| c.into()) });
    }
    out
}

/// Reads `input` into a validated model, or all the errors found in it.
pub fn from_input(input: &DeriveInput, derive: Derive) -> syn::Result<Container<'_>> {
    let cx = Ctxt::default();
    let cont = Container::from_ast(&cx, input, derive);
    cx.check()?;
    cont.ok_or_else(|| syn::Error::new_spanned(&input.ident, "unsupported iproto derive input"))
}

impl Container<'_> {
    /// The container's generics with `T: bound` added for every type parameter.
    pub fn bounded_generics(&self, bound: proc_macro2::TokenStream) -> Generics {
        let mut generics = self.generics.clone();
        let params: Vec<Ident> = generics.type_params().map(|p| p.ident.clone()).collect();
        let where_clause = generics.make_where_clause();
        for ident in params {
            where_clause.predicates.push(syn::parse_quote!(#ident: #bound));
        }
        generics
    }
}

impl Fields<'_> {
    /// The fields that appear on the wire.
    pub fn packed(&self) -> impl Iterator<Item = &Field<'_>> {
        self.list.iter().filter(|f| f.is_packed())
    }
}
