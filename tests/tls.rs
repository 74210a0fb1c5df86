//! HTTPS end to end (issue 14): the simulator serves a certificate from a throwaway CA
//! made at test time; the job trusts it only when told to (`--ca-cert`, or the system
//! store via `SSL_CERT_FILE`), and otherwise stops before sending anything.

use crate::common;

use common::pki::TestPki;
use common::{Harness, generated_csv, states};
use podero_onboard::sandbox;

const USERS: usize = 20;

async fn https_harness(pki: &TestPki) -> Harness {
    let builder = sandbox::Builder::new()
        .generated_users(USERS)
        .tls(pki.server_tls());
    let h = Harness::new(builder).await;
    assert!(h.sandbox.base_url().starts_with("https://"));
    h
}

/// Nothing reached the simulator: no token, no API request.
fn assert_nothing_sent(h: &Harness) {
    let state = h.state();
    assert_eq!(state.tokens_issued, 0, "{}", h.describe_state());
    assert_eq!(
        state.requests.values().sum::<u64>(),
        0,
        "{}",
        h.describe_state()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_a_whole_job_over_https_trusting_a_private_ca_given_with_ca_cert() {
    let pki = TestPki::new();
    let h = https_harness(&pki).await;
    let ca = h.write("company-ca.pem", &pki.ca_pem);
    let csv = h.write("users.csv", generated_csv(USERS, 1));
    let out = h.run(&csv, &["--ca-cert", ca.to_str().unwrap()]).await;
    h.expect_code(&out, 0);
    assert_eq!(states(&h.checkpoint_rows())["done"], USERS);
    assert_eq!(
        h.state().buildings.values().map(Vec::len).sum::<usize>(),
        USERS
    );
    h.assert_no_duplicates_and_map_matches();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusts_the_ca_from_the_podero_ca_cert_variable() {
    let pki = TestPki::new();
    let h = https_harness(&pki).await;
    let ca = h.write("company-ca.pem", &pki.ca_pem);
    let csv = h.write("users.csv", generated_csv(USERS, 1));
    let mut cmd = h.command(&[]);
    cmd.env("PODERO_CA_CERT", &ca).args(h.run_args(&csv, &[]));
    let out = h.exec_with(cmd).await;
    h.expect_code(&out, 0);
    assert_eq!(states(&h.checkpoint_rows())["done"], USERS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusts_a_ca_installed_in_the_system_store() {
    // SSL_CERT_FILE points the system store at a bundle: what `update-ca-certificates`
    // produces on a host where IT installed its CA.
    let pki = TestPki::new();
    let h = https_harness(&pki).await;
    let bundle = h.write("system-bundle.pem", &pki.ca_pem);
    let csv = h.write("users.csv", generated_csv(USERS, 1));
    let mut cmd = h.command(&[]);
    cmd.env("SSL_CERT_FILE", &bundle)
        .args(h.run_args(&csv, &[]));
    let out = h.exec_with(cmd).await;
    h.expect_code(&out, 0);
    assert_eq!(states(&h.checkpoint_rows())["done"], USERS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_stops_the_run_with_exit_3_before_anything_is_sent() {
    let pki = TestPki::new();
    let h = https_harness(&pki).await;
    let csv = h.write("users.csv", generated_csv(USERS, 1));
    let out = h.run(&csv, &[]).await;
    h.expect_code(&out, 3);
    assert!(
        out.stderr.contains("certificate") && out.stderr.contains("--ca-cert"),
        "names the certificate problem and the fix:\n{}",
        out.stderr
    );
    assert_nothing_sent(&h);
    assert!(
        h.checkpoint_rows().iter().all(|r| r.state != "done"),
        "no row is done"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_cert_that_holds_no_certificate_is_refused_at_start_up() {
    let pki = TestPki::new();
    let h = https_harness(&pki).await;
    // A classic mistake: the key instead of the certificate.
    let wrong = h.write("ca.key", &pki.server_key_pem);
    let csv = h.write("users.csv", generated_csv(USERS, 1));
    let out = h.run(&csv, &["--ca-cert", wrong.to_str().unwrap()]).await;
    h.expect_code(&out, 2);
    assert!(
        out.stderr.contains("--ca-cert") && out.stderr.contains("ca.key"),
        "names the flag and the file:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("no certificate found"),
        "{}",
        out.stderr
    );
    assert_nothing_sent(&h);
}
