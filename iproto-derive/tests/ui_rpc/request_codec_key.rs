use iproto::{IprotoPack, IprotoUnpack, Request};

#[derive(IprotoPack, IprotoUnpack, Request)]
#[request(msg = 0x10, response = u32, ber)]
struct Get {
    key: u32,
}

fn main() {}
