//! One compile-fail case per error the macros report at compile time (Flax raises these at
//! run time). Snapshots: `TRYBUILD=overwrite cargo test -p flax-ui-tests` rewrites them.

#[test]
fn compile_time_errors() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}

/// The shape checker's errors (`#[shape(…)]`), one case per kind; run alone with
/// `cargo test -p flax-ui-tests -- shape_errors`.
#[test]
fn shape_errors() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/shape/*.rs");
}

/// The errors of `setup`-style modules (`#[setup]` fields and `fn setup`), one case per kind;
/// Flax raises most of them at run time.
#[test]
fn setup_errors() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/setup/*.rs");
}
