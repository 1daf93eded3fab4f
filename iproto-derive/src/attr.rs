//! The attributes of every macro in this crate, parsed in one place: `#[iproto(...)]` on codec
//! and error types, `#[request(...)]` on request types and `#[iproto(...)]` on service methods.
//! Each list is read into typed items, checked against the [`Place`] it is written on, and
//! turned into a small per-place model; every misuse is recorded in a [`Ctxt`] so that all of
//! them are reported together, each at its own span.

use std::cell::RefCell;

use proc_macro2::Span;
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Attribute, LitInt, LitStr, Path, Token, Type};

/// Collects the errors found while reading a macro input, so that all of them are reported at
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

    /// How many errors were recorded so far.
    pub fn error_count(&self) -> usize {
        self.errors.borrow().len()
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

/// Where an attribute list is written; decides the attribute's name and the keys it accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Struct,
    Enum,
    Variant,
    Field,
    /// An enum deriving `ServiceError`.
    ErrorEnum,
    /// A variant of such an enum.
    ErrorVariant,
    /// `#[request(...)]` on a type deriving `Request`.
    Request,
    /// `#[iproto(...)]` on a method of an `#[iproto::service]` trait.
    Method,
}

impl Place {
    fn attr(self) -> &'static str {
        match self {
            Place::Request => "request",
            _ => "iproto",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Place::Struct => "a struct",
            Place::Enum => "an enum",
            Place::Variant => "an enum variant",
            Place::Field => "a field",
            Place::ErrorEnum => "a ServiceError enum",
            Place::ErrorVariant => "a ServiceError variant",
            Place::Request => "a request type",
            Place::Method => "a service method",
        }
    }

    fn keys(self) -> &'static [Key] {
        match self {
            Place::Struct | Place::ErrorEnum => &[Key::Ber],
            Place::Enum => &[Key::Tag],
            Place::Variant => &[Key::TagValue],
            Place::Field => &[Key::Ber, Key::Fixed, Key::Skip, Key::With, Key::Elem],
            Place::ErrorVariant => &[Key::Code],
            Place::Request => &[Key::Msg, Key::Response, Key::Notify],
            Place::Method => &[Key::Msg, Key::Notify, Key::Raw],
        }
    }
}

/// Every key any of the macros understands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Ber,
    Fixed,
    Skip,
    With,
    Elem,
    Tag,
    TagValue,
    Code,
    Msg,
    Response,
    Notify,
    Raw,
}

const KEYS: [Key; 12] = [
    Key::Ber,
    Key::Fixed,
    Key::Skip,
    Key::With,
    Key::Elem,
    Key::Tag,
    Key::TagValue,
    Key::Code,
    Key::Msg,
    Key::Response,
    Key::Notify,
    Key::Raw,
];

impl Key {
    fn name(self) -> &'static str {
        match self {
            Key::Ber => "ber",
            Key::Fixed => "fixed",
            Key::Skip => "skip",
            Key::With => "with",
            Key::Elem => "elem",
            Key::Tag => "tag",
            Key::TagValue => "tag_value",
            Key::Code => "code",
            Key::Msg => "msg",
            Key::Response => "response",
            Key::Notify => "notify",
            Key::Raw => "raw",
        }
    }

    /// Where the key belongs, for the error when it is written elsewhere.
    fn applies_to(self) -> &'static str {
        match self {
            Key::Ber => "structs and fields",
            Key::Fixed | Key::Skip | Key::With | Key::Elem => "fields",
            Key::Tag => "enums",
            Key::TagValue => "enum variants",
            Key::Code => "variants of a #[derive(ServiceError)] enum",
            Key::Msg | Key::Notify => "#[request(...)] and service methods",
            Key::Response => "#[request(...)]",
            Key::Raw => "service methods",
        }
    }

    fn is_flag(self) -> bool {
        matches!(self, Key::Ber | Key::Fixed | Key::Skip | Key::Notify | Key::Raw)
    }
}

/// A key's parsed value.
enum Value {
    Flag,
    Path(Path),
    Mode(Mode),
    Tag(TagType),
    Int(u64),
    Code(u32),
    Type(Box<Type>),
}

/// One key of an attribute list; `value` is `None` when it did not parse (already reported),
/// so that the key still counts as written.
struct Item {
    key: Key,
    span: Span,
    value: Option<Value>,
}

/// Codes from here on are iproto's control messages (ping, shutdown).
const MSG_RESERVED_MIN: u64 = 0xff00;
/// Return codes from here on belong to the RPC layer (rejections).
const RC_RESERVED_MIN: u64 = 0xffff_ff00;

/// The items of every `#[<place's attribute>(...)]` in `attrs`, each checked against `place`.
struct Items<'a> {
    cx: &'a Ctxt,
    items: Vec<Item>,
}

impl<'a> Items<'a> {
    fn parse(cx: &'a Ctxt, attrs: &[Attribute], place: Place) -> Self {
        let mut items: Vec<Item> = Vec::new();
        for attr in attrs.iter().filter(|a| a.path().is_ident(place.attr())) {
            let res = attr.parse_nested_meta(|meta| {
                let span = meta.path.span();
                let Some(key) = KEYS.iter().copied().find(|k| meta.path.is_ident(k.name())) else {
                    cx.error_spanned_by(&meta.path, unknown_key_message(&meta.path, place));
                    return skip_value(&meta);
                };
                if !place.keys().contains(&key) {
                    cx.error_at(span, misplaced_message(key, place));
                    return skip_value(&meta);
                }
                let value = match parse_value(&meta, key) {
                    Ok(value) => Some(value),
                    Err(err) => {
                        cx.syn_error(err);
                        skip_value(&meta)?;
                        None
                    }
                };
                if items.iter().any(|seen| seen.key == key) {
                    cx.error_at(span, format!("duplicate {} attribute `{}`", place.attr(), key.name()));
                } else {
                    items.push(Item { key, span, value });
                }
                Ok(())
            });
            if let Err(err) = res {
                cx.syn_error(err);
            }
        }
        Items { cx, items }
    }

    fn span(&self, key: Key) -> Option<Span> {
        self.items.iter().find(|i| i.key == key).map(|i| i.span)
    }

    fn value(&self, key: Key) -> Option<(&Value, Span)> {
        self.items.iter().find(|i| i.key == key).and_then(|i| Some((i.value.as_ref()?, i.span)))
    }

    /// Reports `b` when written together with `a`.
    fn conflict(&self, a: Key, b: Key) {
        if let (Some(_), Some(span)) = (self.span(a), self.span(b)) {
            self.cx.error_at(span, format!("`{}` cannot be combined with `{}`", b.name(), a.name()));
        }
    }
}

fn unknown_key_message(path: &Path, place: Place) -> String {
    let keys: Vec<String> = place.keys().iter().map(|k| format!("`{}`", k.name())).collect();
    let expected = match keys.as_slice() {
        [one] => format!("the only key on {} is {one}", place.describe()),
        _ => format!("expected one of {} on {}", keys.join(", "), place.describe()),
    };
    format!("unknown {} attribute `{}`; {expected}", place.attr(), path.to_token_stream().to_string().replace(' ', ""))
}

fn misplaced_message(key: Key, place: Place) -> String {
    let hint = match (key, place) {
        (Key::Ber, Place::Enum) => "; put `ber` on the variant fields instead".to_string(),
        (Key::Ber, Place::Variant | Place::ErrorVariant) => "; put `ber` on the variant's fields instead".into(),
        (Key::Tag | Key::TagValue, Place::ErrorEnum | Place::ErrorVariant) => {
            "; a ServiceError variant is identified by its `code`".into()
        }
        (Key::Response, Place::Method) => "; a method's reply type is its return type".into(),
        (Key::Ber | Key::Fixed | Key::Skip | Key::With | Key::Elem | Key::Tag, Place::Request) => {
            format!("; it applies to {}, in #[iproto(...)]", key.applies_to())
        }
        _ => format!("; it applies to {}", key.applies_to()),
    };
    format!("`{}` is not allowed on {}{hint}", key.name(), place.describe())
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

fn parse_value(meta: &ParseNestedMeta, key: Key) -> syn::Result<Value> {
    if key.is_flag() {
        if meta.input.peek(Token![=]) || meta.input.peek(syn::token::Paren) {
            return Err(meta.error(format!("`{}` takes no value", key.name())));
        }
        return Ok(Value::Flag);
    }
    let value = meta.value()?;
    match key {
        Key::With => {
            let path =
                if value.peek(LitStr) { value.parse::<LitStr>()?.parse::<Path>()? } else { value.parse::<Path>()? };
            Ok(Value::Path(path))
        }
        Key::Elem => {
            let ident: syn::Ident = value.parse()?;
            match ident.to_string().as_str() {
                "ber" => Ok(Value::Mode(Mode::Ber)),
                "fixed" => Ok(Value::Mode(Mode::Fixed)),
                _ => Err(syn::Error::new(ident.span(), "expected `elem = ber` or `elem = fixed`")),
            }
        }
        Key::Tag => {
            let ident: syn::Ident = value.parse()?;
            Ok(Value::Tag(match ident.to_string().as_str() {
                "u8" => TagType::U8,
                "u16" => TagType::U16,
                "u32" => TagType::U32,
                "ber" => TagType::Ber,
                _ => return Err(syn::Error::new(ident.span(), "expected `tag = u8`, `u16`, `u32` or `ber`")),
            }))
        }
        Key::TagValue => {
            let lit: LitInt = value.parse()?;
            let v = lit
                .base10_parse::<u64>()
                .map_err(|_| syn::Error::new(lit.span(), "`tag_value` must be a non-negative integer that fits u64"))?;
            Ok(Value::Int(v))
        }
        Key::Code => {
            let lit: LitInt = value.parse()?;
            match lit.base10_parse::<u64>() {
                Ok(0) => {
                    Err(syn::Error::new(lit.span(), "return code 0 means success; a ServiceError code is 1 or more"))
                }
                Ok(c) if c < RC_RESERVED_MIN => Ok(Value::Code(c as u32)),
                _ => Err(syn::Error::new(
                    lit.span(),
                    "a ServiceError code must be below 0xffff_ff00 (the codes above are the RPC layer's rejections)",
                )),
            }
        }
        Key::Msg => {
            let lit: LitInt = value.parse()?;
            match lit.base10_parse::<u64>() {
                Ok(c) if c < MSG_RESERVED_MIN => Ok(Value::Code(c as u32)),
                Ok(c) if c <= u64::from(u32::MAX) => Err(syn::Error::new(
                    lit.span(),
                    format!("message code {c:#x} is reserved: codes >= 0xff00 are control messages (ping, shutdown)"),
                )),
                _ => Err(syn::Error::new(lit.span(), "a message code must be an integer that fits u32")),
            }
        }
        Key::Response => Ok(Value::Type(Box::new(value.parse()?))),
        Key::Ber | Key::Fixed | Key::Skip | Key::Notify | Key::Raw => unreachable!("flags are handled above"),
    }
}

/// Attributes of a struct, or of an enum deriving `ServiceError`.
pub struct StructAttrs {
    /// `#[iproto(ber)]`: every field defaults to BER.
    pub ber: bool,
}

impl StructAttrs {
    pub fn from_ast(cx: &Ctxt, attrs: &[Attribute], place: Place) -> Self {
        let items = Items::parse(cx, attrs, place);
        StructAttrs { ber: items.span(Key::Ber).is_some() }
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
        let items = Items::parse(cx, attrs, Place::Enum);
        if items.span(Key::Tag).is_none() {
            cx.error_spanned_by(
                ident,
                "an iproto enum needs a declared tag type: #[iproto(tag = u8)] (or u16, u32, ber)",
            );
        }
        let tag = match items.value(Key::Tag) {
            Some((Value::Tag(t), _)) => Some(*t),
            _ => None,
        };
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
        let items = Items::parse(cx, attrs, Place::Variant);
        let tag_value = match items.value(Key::TagValue) {
            Some((Value::Int(v), span)) => Some((*v, span)),
            _ => None,
        };
        VariantAttrs { tag_value }
    }
}

/// Attributes of a variant of a `ServiceError` enum.
pub struct ErrorVariantAttrs {
    /// `#[iproto(code = N)]` and where it was written; required.
    pub code: Option<(u32, Span)>,
}

impl ErrorVariantAttrs {
    /// Also reports a missing `code` (at `ident`), unless a malformed one was already reported.
    pub fn from_ast(cx: &Ctxt, ident: &syn::Ident, attrs: &[Attribute]) -> Self {
        let items = Items::parse(cx, attrs, Place::ErrorVariant);
        if items.span(Key::Code).is_none() {
            cx.error_spanned_by(ident, format!("variant `{ident}` needs its return code: #[iproto(code = 1)]"));
        }
        let code = match items.value(Key::Code) {
            Some((Value::Code(c), span)) => Some((*c, span)),
            _ => None,
        };
        ErrorVariantAttrs { code }
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
        let items = Items::parse(cx, attrs, Place::Field);
        items.conflict(Key::Ber, Key::Fixed);
        for other in [Key::Ber, Key::Fixed, Key::With, Key::Elem] {
            items.conflict(Key::Skip, other);
        }
        items.conflict(Key::With, Key::Elem);

        let mode = match (items.span(Key::Ber), items.span(Key::Fixed)) {
            (Some(_), _) => Some(Mode::Ber),
            (None, Some(_)) => Some(Mode::Fixed),
            (None, None) => None,
        };
        let codec = if items.span(Key::Skip).is_some() {
            FieldCodec::Skip
        } else if let Some((Value::Path(path), _)) = items.value(Key::With) {
            FieldCodec::With(path.clone())
        } else if let Some((Value::Mode(m), _)) = items.value(Key::Elem) {
            FieldCodec::Elem(*m)
        } else {
            FieldCodec::Plain
        };
        FieldAttrs { mode, codec }
    }
}

/// `#[request(...)]` on a type deriving `Request`.
pub struct RequestAttrs {
    pub msg: Option<u32>,
    /// `None` for a `notify` message.
    pub response: Option<Type>,
}

impl RequestAttrs {
    /// Also reports a missing attribute, code or reply kind (at `ident`).
    pub fn from_ast(cx: &Ctxt, ident: &syn::Ident, attrs: &[Attribute]) -> Self {
        let items = Items::parse(cx, attrs, Place::Request);
        let written = attrs.iter().any(|a| a.path().is_ident("request"));
        if !written {
            cx.error_spanned_by(ident, "#[derive(Request)] needs #[request(msg = 0x10, response = Reply)]");
        } else if items.span(Key::Msg).is_none() {
            cx.error_spanned_by(ident, format!("`{ident}` needs a message code: #[request(msg = 0x10, ..)]"));
        }
        let response = match items.value(Key::Response) {
            Some((Value::Type(ty), _)) => Some((**ty).clone()),
            _ => None,
        };
        let notify = items.span(Key::Notify).is_some();
        match (&response, notify) {
            (Some(ty), true) => cx.error_spanned_by(ty, "a `notify` message has no `response`"),
            (None, false) if written && items.span(Key::Response).is_none() => cx.error_spanned_by(
                ident,
                format!("`{ident}` needs `response = Type`, or `notify` for one-way messages"),
            ),
            _ => {}
        }
        RequestAttrs { msg: msg_of(&items), response }
    }
}

/// `#[iproto(...)]` on a service method.
pub struct MethodAttrs {
    pub msg: Option<u32>,
    /// Whether `msg` was written at all (a malformed one is already reported).
    pub msg_written: bool,
    pub notify: bool,
    /// `raw`: the reply is sent as is, even if its type is named like a `Result`.
    pub raw: Option<Span>,
}

impl MethodAttrs {
    pub fn from_ast(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let items = Items::parse(cx, attrs, Place::Method);
        items.conflict(Key::Notify, Key::Raw);
        MethodAttrs {
            msg: msg_of(&items),
            msg_written: items.span(Key::Msg).is_some(),
            notify: items.span(Key::Notify).is_some(),
            raw: items.span(Key::Raw),
        }
    }
}

fn msg_of(items: &Items) -> Option<u32> {
    match items.value(Key::Msg) {
        Some((Value::Code(c), _)) => Some(*c),
        _ => None,
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
