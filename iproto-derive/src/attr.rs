//! `#[iproto(...)]` attributes: parsed once into typed per-context models (container, variant,
//! field), with every misuse recorded in a [`Ctxt`] so that all errors are reported together.

use std::cell::RefCell;

use proc_macro2::Span;
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Attribute, LitInt, LitStr, Path, Token};

/// Collects the errors found while reading a derive input, so that all of them are reported at
/// once instead of the first only.
#[derive(Default)]
pub struct Ctxt {
    errors: RefCell<Vec<syn::Error>>,
}

impl Ctxt {
    /// Records an error spanning the tokens of `obj`.
    pub fn error_spanned_by<T: ToTokens>(&self, obj: T, msg: impl std::fmt::Display) {
        self.errors.borrow_mut().push(syn::Error::new_spanned(obj.into_token_stream(), msg));
    }

    /// Records an error at `span`.
    pub fn error_at(&self, span: Span, msg: impl std::fmt::Display) {
        self.errors.borrow_mut().push(syn::Error::new(span, msg));
    }

    /// Records a parse error.
    pub fn syn_error(&self, err: syn::Error) {
        self.errors.borrow_mut().push(err);
    }

    /// All recorded errors combined into one, or `Ok` if there were none.
    pub fn check(self) -> Result<(), syn::Error> {
        let mut errors = self.errors.into_inner().into_iter();
        let Some(mut first) = errors.next() else { return Ok(()) };
        errors.for_each(|e| first.combine(e));
        Err(first)
    }
}

/// The wire encoding selected by `ber` / `fixed` / `elem = ..`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Fixed,
    Ber,
}

/// The declared encoding of an enum's tag: `#[iproto(tag = u8 | u16 | u32 | ber)]`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TagType {
    U8,
    U16,
    U32,
    Ber,
}

impl TagType {
    /// The largest tag value the type can carry.
    pub fn max(self) -> u64 {
        match self {
            TagType::U8 => u8::MAX.into(),
            TagType::U16 => u16::MAX.into(),
            TagType::U32 => u32::MAX.into(),
            TagType::Ber => u64::MAX,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TagType::U8 => "u8",
            TagType::U16 => "u16",
            TagType::U32 => "u32",
            TagType::Ber => "ber",
        }
    }
}

/// One key of an `#[iproto(...)]` list, with its value.
enum Item {
    Ber,
    Fixed,
    Skip,
    With(Path),
    Elem(Mode),
    Tag(TagType),
    TagValue(u64),
    /// A known key whose value did not parse (already reported); kept so that the key counts
    /// as written.
    Invalid(&'static str),
}

impl Item {
    fn key(&self) -> &'static str {
        match self {
            Item::Ber => "ber",
            Item::Fixed => "fixed",
            Item::Skip => "skip",
            Item::With(_) => "with",
            Item::Elem(_) => "elem",
            Item::Tag(_) => "tag",
            Item::TagValue(_) => "tag_value",
            Item::Invalid(key) => key,
        }
    }
}

/// Parses every `#[iproto(...)]` attribute in `attrs` into items with their spans, recording
/// unknown keys, malformed values and duplicates.
fn parse_items(cx: &Ctxt, attrs: &[Attribute]) -> Vec<(Item, Span)> {
    let mut items: Vec<(Item, Span)> = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("iproto")) {
        let res = attr.parse_nested_meta(|meta| {
            let span = meta.path.span();
            match parse_item(&meta) {
                Ok(Some(item)) => {
                    if items.iter().any(|(seen, _)| seen.key() == item.key()) {
                        cx.error_at(span, format!("duplicate iproto attribute `{}`", item.key()));
                    } else {
                        items.push((item, span));
                    }
                }
                Ok(None) => {
                    cx.error_spanned_by(&meta.path, unknown_key_message(&meta.path));
                    skip_value(&meta)?;
                }
                Err(err) => {
                    cx.syn_error(err);
                    if let Some(key) = KEYS.iter().find(|k| meta.path.is_ident(k)) {
                        items.push((Item::Invalid(key), span));
                    }
                    skip_value(&meta)?;
                }
            }
            Ok(())
        });
        if let Err(err) = res {
            cx.syn_error(err);
        }
    }
    items
}

const KEYS: [&str; 7] = ["ber", "fixed", "skip", "with", "elem", "tag", "tag_value"];

fn unknown_key_message(path: &Path) -> String {
    let keys: Vec<String> = KEYS.iter().map(|k| format!("`{k}`")).collect();
    format!(
        "unknown iproto attribute `{}`; expected one of {}",
        path.to_token_stream().to_string().replace(' ', ""),
        keys.join(", ")
    )
}

/// Consumes whatever follows an unusable key (`= value` or `(...)`) so that parsing can go on.
fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.input.parse::<Token![=]>()?;
        meta.input.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let _content;
        syn::parenthesized!(_content in meta.input);
    }
    Ok(())
}

/// `Ok(None)` for an unknown key.
fn parse_item(meta: &ParseNestedMeta) -> syn::Result<Option<Item>> {
    let path = &meta.path;
    let flag = |item: Item| -> syn::Result<Option<Item>> {
        if meta.input.peek(Token![=]) || meta.input.peek(syn::token::Paren) {
            return Err(meta.error(format!("`{}` takes no value", item.key())));
        }
        Ok(Some(item))
    };
    if path.is_ident("ber") {
        flag(Item::Ber)
    } else if path.is_ident("fixed") {
        flag(Item::Fixed)
    } else if path.is_ident("skip") {
        flag(Item::Skip)
    } else if path.is_ident("with") {
        let value = meta.value()?;
        let path =
            if value.peek(LitStr) { value.parse::<LitStr>()?.parse::<Path>()? } else { value.parse::<Path>()? };
        Ok(Some(Item::With(path)))
    } else if path.is_ident("elem") {
        let ident: syn::Ident = meta.value()?.parse()?;
        match ident.to_string().as_str() {
            "ber" => Ok(Some(Item::Elem(Mode::Ber))),
            "fixed" => Ok(Some(Item::Elem(Mode::Fixed))),
            _ => Err(syn::Error::new(ident.span(), "expected `elem = ber` or `elem = fixed`")),
        }
    } else if path.is_ident("tag") {
        let ident: syn::Ident = meta.value()?.parse()?;
        let ty = match ident.to_string().as_str() {
            "u8" => TagType::U8,
            "u16" => TagType::U16,
            "u32" => TagType::U32,
            "ber" => TagType::Ber,
            _ => return Err(syn::Error::new(ident.span(), "expected `tag = u8`, `u16`, `u32` or `ber`")),
        };
        Ok(Some(Item::Tag(ty)))
    } else if path.is_ident("tag_value") {
        let lit: LitInt = meta.value()?.parse()?;
        let value = lit
            .base10_parse::<u64>()
            .map_err(|_| syn::Error::new(lit.span(), "`tag_value` must be a non-negative integer that fits u64"))?;
        Ok(Some(Item::TagValue(value)))
    } else {
        Ok(None)
    }
}

/// Reports every item that `context` does not accept, with `why` for each.
fn reject(cx: &Ctxt, items: &[(Item, Span)], context: &str, allowed: &[&str]) {
    for (item, span) in items {
        if !allowed.contains(&item.key()) {
            let hint = match item.key() {
                "tag" => "; it applies to enums",
                "tag_value" => "; it applies to enum variants",
                "ber" if context == "an enum" => "; put `ber` on the variant fields instead",
                "fixed" | "skip" | "with" | "elem" => "; it applies to fields",
                _ => "",
            };
            cx.error_at(*span, format!("`{}` is not allowed on {context}{hint}", item.key()));
        }
    }
}

fn span_of(items: &[(Item, Span)], key: &str) -> Option<Span> {
    items.iter().find(|(i, _)| i.key() == key).map(|(_, s)| *s)
}

/// Attributes of a struct.
pub struct StructAttrs {
    /// `#[iproto(ber)]`: every field defaults to BER.
    pub ber: bool,
}

impl StructAttrs {
    pub fn from_ast(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let items = parse_items(cx, attrs);
        reject(cx, &items, "a struct", &["ber"]);
        StructAttrs { ber: span_of(&items, "ber").is_some() }
    }
}

/// Attributes of an enum.
pub struct EnumAttrs {
    /// `#[iproto(tag = ..)]`, required.
    pub tag: Option<TagType>,
}

impl EnumAttrs {
    /// Also reports a missing `tag` (at `ident`), unless a malformed one was already reported.
    pub fn from_ast(cx: &Ctxt, ident: &syn::Ident, attrs: &[Attribute]) -> Self {
        let items = parse_items(cx, attrs);
        reject(cx, &items, "an enum", &["tag"]);
        if span_of(&items, "tag").is_none() {
            cx.error_spanned_by(
                ident,
                "an iproto enum needs a declared tag type: #[iproto(tag = u8)] (or u16, u32, ber)",
            );
        }
        let tag = items.iter().find_map(|(i, _)| match i {
            Item::Tag(t) => Some(*t),
            _ => None,
        });
        EnumAttrs { tag }
    }
}

/// Attributes of an enum variant.
pub struct VariantAttrs {
    /// `#[iproto(tag_value = N)]` and where it was written.
    pub tag_value: Option<(u64, Span)>,
}

impl VariantAttrs {
    pub fn from_ast(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let items = parse_items(cx, attrs);
        reject(cx, &items, "an enum variant", &["tag_value"]);
        let tag_value = items.iter().find_map(|(i, s)| match i {
            Item::TagValue(v) => Some((*v, *s)),
            _ => None,
        });
        VariantAttrs { tag_value }
    }
}

/// How a field is encoded, after checking that its attributes go together.
pub enum FieldCodec {
    /// `IprotoPack`/`IprotoUnpack` of the field's type.
    Plain,
    /// A sequence whose elements use the given mode (`elem = ..`).
    Elem(Mode),
    /// `with = path`: `path::pack` / `path::unpack`.
    With(Path),
    /// Not on the wire; `Default::default()` on unpack.
    Skip,
}

/// Attributes of a struct or variant field.
pub struct FieldAttrs {
    /// `ber` / `fixed` if given; otherwise the container's default applies.
    pub mode: Option<Mode>,
    pub codec: FieldCodec,
}

impl FieldAttrs {
    pub fn from_ast(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let items = parse_items(cx, attrs);
        reject(cx, &items, "a field", &["ber", "fixed", "skip", "with", "elem"]);
        let conflict = |a: &str, b: &str| {
            if let (Some(_), Some(span)) = (span_of(&items, a), span_of(&items, b)) {
                cx.error_at(span, format!("`{b}` cannot be combined with `{a}`"));
            }
        };
        conflict("ber", "fixed");
        conflict("skip", "ber");
        conflict("skip", "fixed");
        conflict("skip", "with");
        conflict("skip", "elem");
        conflict("with", "elem");

        let mode = match (span_of(&items, "ber"), span_of(&items, "fixed")) {
            (Some(_), _) => Some(Mode::Ber),
            (None, Some(_)) => Some(Mode::Fixed),
            (None, None) => None,
        };
        let mut codec = FieldCodec::Plain;
        for (item, _) in items {
            match item {
                Item::Skip => codec = FieldCodec::Skip,
                Item::With(path) if !matches!(codec, FieldCodec::Skip) => codec = FieldCodec::With(path),
                Item::Elem(m) if matches!(codec, FieldCodec::Plain) => codec = FieldCodec::Elem(m),
                _ => {}
            }
        }
        FieldAttrs { mode, codec }
    }
}

impl quote::ToTokens for Mode {
    fn to_tokens(&self, tokens: &mut proc_macro2::TokenStream) {
        tokens.extend(match self {
            Mode::Fixed => quote::quote!(::iproto::Mode::Fixed),
            Mode::Ber => quote::quote!(::iproto::Mode::Ber),
        });
    }
}
