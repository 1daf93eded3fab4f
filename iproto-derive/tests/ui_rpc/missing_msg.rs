#[iproto::service]
pub trait Kv {
    async fn get(&self, key: String) -> u32;
}

fn main() {}
