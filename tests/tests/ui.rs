//! Compile-fail and pass tests for `#[job]` (trybuild).
//!
//! Compiler messages change between Rust releases, so the checked-in `.stderr` files are compared
//! only on the toolchain that wrote them (below); other toolchains run the pass tests alone.
//! Regenerate with `TRYBUILD=overwrite cargo test -p routemq-tests --test ui` and review the diff.

/// The `rustc` release the `.stderr` files were written with.
const PINNED_RUSTC: &str = "rustc 1.95.";

#[test]
fn job_attribute() {
    let cases = trybuild::TestCases::new();
    cases.pass("ui/pass/*.rs");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    if version.starts_with(PINNED_RUSTC) {
        cases.compile_fail("ui/fail/*.rs");
    } else {
        println!(
            "skipped: compile_fail stderr is pinned to {PINNED_RUSTC}x, this is {}",
            version.trim()
        );
    }
}
