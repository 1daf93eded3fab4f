use iproto::IprotoPack;

mod codec {}

// Every misuse below is reported in one compile run.
#[derive(IprotoPack)]
#[iproto(tag_value = 1)]
struct Bad {
    #[iproto(bre)]
    a: u32,
    #[iproto(ber, fixed)]
    b: u32,
    #[iproto(skip, with = codec)]
    c: u32,
    #[iproto(ber, ber)]
    d: u32,
    #[iproto(elem = varint)]
    e: Vec<u32>,
    #[iproto(with = codec, elem = ber)]
    f: Vec<u32>,
    #[iproto(tag = u8)]
    g: u8,
    #[iproto(skip = 1)]
    h: u8,
}

fn main() {}
