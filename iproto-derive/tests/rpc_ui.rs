//! Compile-fail tests for `#[iproto::service]` and `#[derive(Request)]`: each mistake is an
//! error naming the method or type. Regenerate the `.stderr` files with `TRYBUILD=overwrite`.

#[test]
fn service_and_request_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui_rpc/*.rs");
}
