//! Every integration test in one binary: `cargo test --release --test it` runs them all,
//! `cargo test --release --test it durability::` one suite. The suites stay in
//! `tests/<suite>.rs` (each a module here, sharing one `common`); one binary instead of one
//! per file cuts the build of the tests to a third (measured: compiling and linking 19
//! test binaries took 10m09s wall, 6m31s CPU on the 2-core machine; this one 3m10s, 2m01s),
//! and the run is no slower. Cargo.toml sets `autotests = false`, so a new
//! `tests/<suite>.rs` must be added below: `every_suite_file_is_a_module_here` fails until
//! it is.

#[path = "../common/mod.rs"]
mod common;

#[path = "../adaptive_rate.rs"]
mod adaptive_rate;

#[path = "../contrib.rs"]
mod contrib;

#[path = "../docs.rs"]
mod docs;

#[path = "../customers.rs"]
mod customers;

#[path = "../durability.rs"]
mod durability;

#[path = "../error_body_props.rs"]
mod error_body_props;

#[path = "../first_week.rs"]
mod first_week;

#[path = "../hostile_input.rs"]
mod hostile_input;

#[path = "../hostile_server.rs"]
mod hostile_server;

#[path = "../input_formats.rs"]
mod input_formats;

#[path = "../input_props.rs"]
mod input_props;

#[path = "../links.rs"]
mod links;

#[path = "../metrics.rs"]
mod metrics;

#[path = "../night.rs"]
mod night;

#[path = "../operator.rs"]
mod operator;

#[path = "../politeness.rs"]
mod politeness;

#[path = "../proxy.rs"]
mod proxy;

#[path = "../run.rs"]
mod run;

#[path = "../sandbox.rs"]
mod sandbox;

#[path = "../secrets.rs"]
mod secrets;

#[path = "../sync.rs"]
mod sync;

#[path = "../tls.rs"]
mod tls;

/// A suite file missing here would silently never run.
#[test]
fn every_suite_file_is_a_module_here() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let main = include_str!("main.rs");
    let missing: Vec<String> = std::fs::read_dir(dir)
        .expect("tests/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".rs"))
        .filter(|name| !main.contains(&format!("#[path = \"../{name}\"]")))
        .collect();
    assert!(missing.is_empty(), "add to tests/it/main.rs: {missing:?}");
}
