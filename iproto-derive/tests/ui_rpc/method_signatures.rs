// Each signature the macro cannot serve is an error at the method, saying what is allowed.
#[iproto::service]
pub trait Kv {
    #[iproto(msg = 0x10)]
    async fn no_receiver(key: String) -> u32;
    #[iproto(msg = 0x11)]
    async fn by_value(self, key: String) -> u32;
    #[iproto(msg = 0x12)]
    async fn mutable(&mut self, key: String) -> u32;
    #[iproto(msg = 0x13)]
    async fn two_contexts(&self, a: iproto::rpc::Context, key: String, b: iproto::rpc::Context) -> u32;
    #[iproto(msg = 0x14)]
    async fn context_by_ref(&self, cx: &iproto::rpc::Context) -> u32;
    #[iproto(msg = 0x15)]
    async fn generic<T>(&self, key: T) -> u32;
    #[iproto(msg = 0x16)]
    async fn impl_arg(&self, key: impl AsRef<str>) -> u32;
    #[iproto(msg = 0x17)]
    async fn impl_reply(&self, key: String) -> impl Send;
}

fn main() {}
