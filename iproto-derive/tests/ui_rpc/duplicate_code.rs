#[iproto::service]
pub trait Kv {
    #[iproto(msg = 0x10)]
    async fn get(&self, key: String) -> u32;
    #[iproto(msg = 0x10)]
    async fn put(&self, key: String) -> u32;
}

fn main() {}
