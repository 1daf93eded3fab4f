use iproto::IprotoPack;

#[derive(IprotoPack)]
enum NoTag {
    A,
}

#[derive(IprotoPack)]
#[iproto(tag = u8, ber)]
enum Mixed {
    #[iproto(tag_value = 1)]
    A,
    #[iproto(tag_value = 1)]
    B,
    #[iproto(tag_value = 256)]
    C,
    D(#[iproto(fixed, skip)] u32),
    #[iproto(ber)]
    E,
}

#[derive(IprotoPack)]
#[iproto(tag = i8)]
enum BadTagType {
    A,
}

#[derive(IprotoPack)]
#[iproto(tag = u16)]
enum Implicit {
    A = 65535,
    B,
}

const FIVE: isize = 5;

#[derive(IprotoPack)]
#[iproto(tag = u32)]
enum Discriminants {
    A = -1,
    B = FIVE,
    C = 2,
    #[iproto(tag_value = 2)]
    D,
}

#[derive(IprotoPack)]
#[iproto(tag = ber)]
enum Empty {}



#[derive(IprotoPack)]
#[iproto(tag = ber)]
enum Overflow {
    #[iproto(tag_value = 18446744073709551615)]
    Last,
    After,
}
fn main() {}
