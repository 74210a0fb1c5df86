//! `sandbox`: the simulator as a separate process. Its flags ([`SandboxArgs`], in the CLI)
//! mirror [`Builder`]; it prints what a user needs to point the job at it, then serves
//! until Ctrl-C.
//!
//! Secrets come from the environment only, like the job's: the client secret it accepts
//! ([`CLIENT_SECRET_ENV`], default the public demo secret) and the optional admin token
//! ([`ADMIN_TOKEN_ENV`]) that guards `/__sandbox/*` (which shows session ids, enough to
//! rebuild Connect links). A flag would show them in `ps`; the banner never prints them.
//! Binding anything but loopback is allowed (a shared test box) but warned about.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use uuid::Uuid;

use crate::cli::SandboxArgs;
use crate::sandbox::{Builder, DEMO_CLIENT_SECRET, Faults, RateLimit};

/// The client secret the standalone simulator accepts (default [`DEMO_CLIENT_SECRET`]).
pub const CLIENT_SECRET_ENV: &str = "PODERO_SANDBOX_CLIENT_SECRET";

/// When set, the admin token `/__sandbox/*` requires (`Authorization: Bearer ...`).
pub const ADMIN_TOKEN_ENV: &str = "PODERO_SANDBOX_ADMIN_TOKEN";

/// The secrets of a standalone simulator, read from the environment.
#[derive(Clone)]
pub struct SandboxSecrets {
    /// The client secret the token endpoint accepts; `None`: the public demo secret.
    pub client_secret: Option<String>,
    /// The admin token of `/__sandbox/*`; `None`: open.
    pub admin_token: Option<String>,
}

impl SandboxSecrets {
    /// Reads [`CLIENT_SECRET_ENV`] and [`ADMIN_TOKEN_ENV`] (empty values count as unset).
    pub fn from_env(env: crate::config::Env<'_>) -> Self {
        SandboxSecrets {
            client_secret: env(CLIENT_SECRET_ENV),
            admin_token: env(ADMIN_TOKEN_ENV),
        }
    }
}

impl SandboxArgs {
    /// The faults these flags ask for.
    pub fn faults(&self) -> Faults {
        Faults {
            rate_limit: self.rate_limit.map(|per_second| RateLimit {
                per_second,
                burst: self.burst,
            }),
            random_429: self.random_429,
            storm: Duration::from_secs(self.storm_secs),
            random_5xx: self.random_5xx,
            latency: Duration::from_millis(self.latency_ms),
            jitter: Duration::from_millis(self.jitter_ms),
            commit_then_drop: self.commit_then_drop,
            commit_then_stall: self.commit_then_stall,
            stall: Duration::from_secs(self.stall_secs),
            fail_5xx_after_commit: self.fail_5xx_after_commit,
            // No flag (yet): `PUT /__sandbox/faults` sets it at runtime.
            email_taken_status: crate::sandbox::DEFAULT_EMAIL_TAKEN_STATUS,
            list_users_status: None,
        }
    }

    /// The [`Builder`] these flags and secrets describe.
    pub fn builder(&self, secrets: &SandboxSecrets) -> anyhow::Result<Builder> {
        let secret = secrets
            .client_secret
            .as_deref()
            .unwrap_or(DEMO_CLIENT_SECRET);
        let mut builder = Builder::new()
            .org_id(self.org_id)
            .credentials(&self.client_id, secret)
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
        if let Some(token) = &secrets.admin_token {
            builder = builder.admin_token(token);
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
    let secrets = SandboxSecrets::from_env(&crate::config::process_env);
    let addr = SocketAddr::new(args.bind, args.port);
    let sandbox = args
        .builder(&secrets)?
        .start_on(addr)
        .await
        .with_context(|| format!("binding {addr} (is the port in use? try --port 0)"))?;
    if let Some(warning) = bind_warning(args.bind, &secrets) {
        eprintln!("{warning}");
    }
    let users = sandbox.state().users.len();
    eprint!(
        "{}",
        banner(
            &sandbox.base_url(),
            users,
            &args,
            &secrets,
            sandbox.org_id()
        )
    );
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

/// A warning for an address other hosts can reach: the simulator accepts public demo
/// credentials, and without an admin token anyone reaching it reads its state.
fn bind_warning(bind: IpAddr, secrets: &SandboxSecrets) -> Option<String> {
    if bind.is_loopback() {
        return None;
    }
    let admin = if secrets.admin_token.is_some() {
        "the /__sandbox endpoints need the admin token"
    } else {
        "anyone who reaches it can read /__sandbox/state (session ids, enough to rebuild \
         Connect links) and change its faults: set PODERO_SANDBOX_ADMIN_TOKEN"
    };
    Some(format!(
        "warning: --bind {bind} is not a loopback address, so other machines can reach this \
         test server; {admin}. Use --bind 127.0.0.1 unless you mean it."
    ))
}

/// What to paste to point the job at the simulator. Secrets set in the environment are
/// referred to by name, never printed; only the public demo secret is shown.
fn banner(
    url: &str,
    users: usize,
    args: &SandboxArgs,
    secrets: &SandboxSecrets,
    org: Uuid,
) -> String {
    let secret = match secrets.client_secret {
        Some(_) => format!("\"${CLIENT_SECRET_ENV}\""),
        None => DEMO_CLIENT_SECRET.to_owned(),
    };
    let state = match secrets.admin_token {
        Some(_) => {
            format!("State: {url}/__sandbox/state (send Authorization: Bearer ${ADMIN_TOKEN_ENV})")
        }
        None => format!("State: {url}/__sandbox/state"),
    };
    format!(
        "Podero sandbox listening on {url} ({users} users)\n{state}\n\
         Point the onboarding job at it with:\n\
         \x20 export PODERO_BASE_URL={url}\n\
         \x20 export PODERO_CLIENT_ID={}\n\
         \x20 export PODERO_CLIENT_SECRET={secret}\n\
         \x20 export PODERO_ORG_ID={org}\n\
         Press Ctrl-C to stop.\n",
        args.client_id
    )
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::sandbox::DEMO_ORG_ID;

    fn secrets(client_secret: Option<&str>, admin_token: Option<&str>) -> SandboxSecrets {
        SandboxSecrets {
            client_secret: client_secret.map(str::to_owned),
            admin_token: admin_token.map(str::to_owned),
        }
    }

    fn args(extra: &[&str]) -> SandboxArgs {
        use clap::Parser;
        let cli =
            crate::cli::Cli::try_parse_from(["podero-onboard", "sandbox"].iter().chain(extra))
                .expect("parses");
        match cli.command {
            crate::cli::Command::Sandbox(args) => *args,
            _ => panic!("not sandbox"),
        }
    }

    #[test]
    fn the_banner_names_a_secret_from_the_environment_but_never_prints_it() {
        let custom = secrets(Some("s3cr3t-from-env"), Some("adm1n-tok3n"));
        let text = banner("http://127.0.0.1:1", 0, &args(&[]), &custom, DEMO_ORG_ID);
        assert!(!text.contains("s3cr3t-from-env"), "{text}");
        assert!(!text.contains("adm1n-tok3n"), "{text}");
        assert!(
            text.contains("export PODERO_CLIENT_SECRET=\"$PODERO_SANDBOX_CLIENT_SECRET\""),
            "{text}"
        );
        let demo = banner(
            "http://127.0.0.1:1",
            0,
            &args(&[]),
            &secrets(None, None),
            DEMO_ORG_ID,
        );
        assert!(
            demo.contains("export PODERO_CLIENT_SECRET=demo-secret"),
            "{demo}"
        );
    }

    #[test]
    fn a_non_loopback_bind_is_warned_about() {
        let open = secrets(None, None);
        assert_eq!(bind_warning(IpAddr::V4(Ipv4Addr::LOCALHOST), &open), None);
        assert_eq!(bind_warning("::1".parse().unwrap(), &open), None);
        let warning = bind_warning("0.0.0.0".parse().unwrap(), &open).expect("a warning");
        assert!(warning.contains("PODERO_SANDBOX_ADMIN_TOKEN"), "{warning}");
        let guarded = bind_warning("0.0.0.0".parse().unwrap(), &secrets(None, Some("t")));
        assert!(guarded.is_some_and(|w| w.contains("need the admin token")));
    }

    #[test]
    fn the_client_secret_is_not_a_flag() {
        use clap::Parser;
        let parsed =
            crate::cli::Cli::try_parse_from(["podero-onboard", "sandbox", "--client-secret", "x"]);
        assert!(parsed.is_err());
    }
}
