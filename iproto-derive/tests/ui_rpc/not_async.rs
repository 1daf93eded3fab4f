#[iproto::service]
pub trait Kv {
    #[iproto(msg = 0x10)]
    fn get(&self, key: String) -> u32;
}

fn main() {}
