// The error of a `Result` reply must be a `ServiceError`.
#[iproto::service]
pub trait Kv {
    #[iproto(msg = 0x10)]
    async fn get(&self, key: String) -> Result<u32, String>;
}

fn main() {}
