//! One compile-fail case per error of `#[derive(Tree)]`. Snapshots:
//! `TRYBUILD=overwrite cargo test -p flax-ui-tests --test tree_derive` rewrites them.

#[test]
fn tree_derive_errors() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/tree_derive/*.rs");
}
