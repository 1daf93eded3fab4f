#[derive(iproto::IprotoUnpack)]
union U {
    a: u32,
    b: f32,
}

fn main() {}
