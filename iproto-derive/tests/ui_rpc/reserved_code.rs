#[iproto::service]
pub trait Kv {
    #[iproto(msg = 0xff00)]
    async fn ping(&self, req: ()) -> ();
}

fn main() {}
