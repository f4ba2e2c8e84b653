//! Enables the PostgreSQL variants of the integration tests when a test server is configured.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(radport_pg_tests)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=RADPORT_TEST_POSTGRES_URL");
    if std::env::var("RADPORT_TEST_POSTGRES_URL").is_ok_and(|v| !v.trim().is_empty()) {
        println!("cargo::rustc-cfg=radport_pg_tests");
    }
}
