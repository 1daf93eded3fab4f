struct Store;

async fn run(server: iproto::Server) {
    // A plain value is not a handler; the message says what is.
    let _ = server.serve(Store).await;
}

fn main() {}
