use iproto::{IprotoPack, IprotoUnpack};

#[derive(IprotoPack, IprotoUnpack)]
pub struct SearchResult {
    hits: u32,
}

// A reply type named like a `Result` that is not one: the fix is `raw`.
#[iproto::service]
pub trait Search {
    #[iproto(msg = 0x10)]
    async fn search(&self, query: String) -> SearchResult;
}

fn main() {}
