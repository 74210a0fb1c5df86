//! `sandbox`: the simulator as a separate process. Its flags ([`SandboxArgs`], in the CLI)
//! mirror [`Builder`]; it prints what a user needs to point the job at it, then serves
//! until Ctrl-C.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

use crate::cli::SandboxArgs;
use crate::sandbox::{Builder, Faults, RateLimit};

impl SandboxArgs {
    /// The faults these flags ask for.
    pub fn faults(&self) -> Faults {
        Faults {
            rate_limit: self.rate_limit.map(|per_second| RateLimit {
                per_second,
                burst: self.burst,
            }),
            random_429: self.random_429,
            random_5xx: self.random_5xx,
            latency: Duration::from_millis(self.latency_ms),
            jitter: Duration::from_millis(self.jitter_ms),
            commit_then_drop: self.commit_then_drop,
            commit_then_stall: self.commit_then_stall,
            stall: Duration::from_secs(self.stall_secs),
            fail_5xx_after_commit: self.fail_5xx_after_commit,
        }
    }

    /// The [`Builder`] these flags describe.
    pub fn builder(&self) -> anyhow::Result<Builder> {
        let mut builder = Builder::new()
            .org_id(self.org_id)
            .credentials(&self.client_id, &self.client_secret)
            .generated_users(self.generate_users)
            .token_lifetime(Duration::from_secs(self.token_lifetime))
            .create_status(self.create_status)
            .list_buildings(self.list_buildings)
            .faults(self.faults())
            .seed(self.seed)
            .request_log(!self.no_request_log);
        for (user, name) in &self.existing_building {
            let mut fields = serde_json::Map::new();
            fields.insert("name".into(), name.clone().into());
            builder = builder.existing_building(*user, fields);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            builder = builder.tls(read_tls(cert, key)?);
        }
        if let Some(path) = &self.users {
            builder = builder
                .users_from_csv(path)
                .with_context(|| format!("reading users from --users {}", path.display()))?;
        }
        Ok(builder)
    }
}

fn read_tls(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<crate::sandbox::ServerTls> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    };
    crate::sandbox::ServerTls::from_pem(&read(cert)?, &read(key)?).with_context(|| {
        format!(
            "--tls-cert {} / --tls-key {}",
            cert.display(),
            key.display()
        )
    })
}

/// Runs the simulator until Ctrl-C, printing connection details to stderr.
pub async fn run_standalone(args: SandboxArgs) -> anyhow::Result<()> {
    let addr = SocketAddr::new(args.bind, args.port);
    let sandbox = args
        .builder()?
        .start_on(addr)
        .await
        .with_context(|| format!("binding {addr} (is the port in use? try --port 0)"))?;
    let users = sandbox.state().users.len();
    eprintln!(
        "Podero sandbox listening on {} ({users} users)",
        sandbox.base_url()
    );
    eprintln!("State: {}/__sandbox/state", sandbox.base_url());
    eprintln!("Point the onboarding job at it with:");
    eprintln!("  export PODERO_BASE_URL={}", sandbox.base_url());
    eprintln!("  export PODERO_CLIENT_ID={}", args.client_id);
    eprintln!("  export PODERO_CLIENT_SECRET={}", args.client_secret);
    eprintln!("  export PODERO_ORG_ID={}", sandbox.org_id());
    eprintln!("Press Ctrl-C to stop.");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    let state = sandbox.state();
    eprintln!(
        "Stopped: {} API requests, {} tokens, {} duplicate building names, {} anomalies",
        state.api_requests(),
        state.tokens_issued,
        state.duplicates().len(),
        state.anomalies.len()
    );
    Ok(())
}
