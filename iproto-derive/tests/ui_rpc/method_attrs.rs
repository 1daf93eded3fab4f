// Every misuse of a service method's attribute is reported at once.
#[iproto::service]
pub trait Kv {
    #[iproto(msg = 0x10, respone = u32)]
    async fn typo(&self, key: String) -> u32;
    #[iproto(msg = 0x11, notify, raw)]
    async fn both(&self, key: String);
    #[iproto(msg = 0x12, response = u32)]
    async fn misplaced(&self, key: String) -> u32;
    #[iproto(msg = 0x13, msg = 0x14)]
    async fn twice(&self, key: String) -> u32;
    #[iproto(msg = "0x15")]
    async fn string_code(&self, key: String) -> u32;
}

fn main() {}
