#[iproto::service]
pub trait Kv {
    #[iproto(msg = 0x12, notify)]
    async fn touch(&self, key: String) -> u32;
}

fn main() {}
