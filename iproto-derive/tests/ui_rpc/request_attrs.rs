use iproto::{IprotoPack, Request};

#[derive(IprotoPack, Request)]
#[request(response = u32)]
struct NoCode {
    key: u32,
}

#[derive(IprotoPack, Request)]
#[request(msg = 0x10, response = u32, notify)]
struct Both {
    key: u32,
}

#[derive(IprotoPack, Request)]
#[request(msg = 0xffff)]
struct Reserved {
    key: u32,
}

fn main() {}
