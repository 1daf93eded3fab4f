//! Compile-fail tests: misused `#[iproto(...)]` attributes are errors pointing at the attribute,
//! all reported at once. Regenerate the `.stderr` files with `TRYBUILD=overwrite`.

#[test]
fn derive_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
