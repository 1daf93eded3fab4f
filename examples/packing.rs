//! iproto serialization: the two modes on plain values (Fixed little-endian and BER, which is
//! Perl's `pack 'w'`), then a struct with `#[derive(IprotoPack, IprotoUnpack)]` whose fields
//! pick their own mode, decoded back zero-copy. Prints every encoding in hex.
//!
//! ```text
//! cargo run --example packing
//! ```

use iproto::{IprotoPack, IprotoUnpack};

/// The same layout as Perl's `pack('L S w/a* w', ...)`.
#[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
struct User<'a> {
    id: u32,
    flags: u16,
    /// BER length, then the bytes; borrowed from the input when decoding.
    #[iproto(ber)]
    name: &'a str,
    #[iproto(ber)]
    visits: u64,
}

/// Nested structs and sequences: a sequence is a u32 count then its elements.
#[derive(IprotoPack, IprotoUnpack, Debug, PartialEq)]
struct Team<'a> {
    #[iproto(ber)]
    id: u32,
    members: Vec<User<'a>>,
    scores: Vec<u16>,
}

fn show(what: &str, bytes: &[u8]) {
    println!("{what:<34} {}", hex::encode(bytes));
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Plain values: Fixed is little-endian at the type's width, BER is base 128, big-endian.
    for n in [5u32, 300, 100_000] {
        show(&format!("{n}u32 fixed"), &iproto::pack(&n)?);
        show(&format!("{n}u32 ber"), &iproto::pack_ber(&n)?);
    }
    show("\"hi\" fixed (u32 length)", &iproto::pack("hi")?);
    show("\"hi\" ber (BER length)", &iproto::pack_ber("hi")?);
    show("-2i16 fixed (two's complement)", &iproto::pack(&-2i16)?);

    // A derived struct: each field keeps its own mode, whatever mode the struct is packed in.
    let user = User { id: 258, flags: 7, name: "Вася", visits: 300 };
    let user_bytes = iproto::pack(&user)?;
    show("User", &user_bytes);
    assert_eq!(user_bytes, iproto::pack_ber(&user)?);

    // Decoding borrows `name` from `bytes`; unpack_exact rejects trailing bytes.
    let back: User = iproto::unpack_exact(&user_bytes)?;
    println!("decoded: {back:?}");
    assert_eq!(back, user);

    let team = Team { id: 1, members: vec![user, User { id: 1, flags: 0, name: "", visits: 0 }], scores: vec![10, 20] };
    let bytes = iproto::pack(&team)?;
    show("Team", &bytes);
    assert_eq!(iproto::unpack_exact::<Team>(&bytes)?, team);

    // Errors name the field and the offset instead of returning half a value.
    let err = iproto::unpack_exact::<User>(&user_bytes[..9]).expect_err("the name is cut short");
    println!("decoding 9 of its bytes: {err}");
    Ok(())
}
