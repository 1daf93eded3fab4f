#[iproto::service]
pub trait Kv {
    #[iproto(msg = 0x10)]
    async fn none(&self) -> u32;
    #[iproto(msg = 0x11)]
    async fn three(&self, cx: iproto::rpc::Context, key: String, extra: u32) -> u32;
}

fn main() {}
