//! `demo`: the real job, end to end, against the built-in simulator, on a sample export of
//! *new* customers (no Podero ids). A newcomer sees each customer looked up by CRM id
//! (one exists already and is found), the others created (`--create-users`), their
//! buildings, retries of injected faults, unknown outcomes verified, a row failing with a
//! clear reason; then the Connect links for the new buildings and the `status` funnel;
//! then where the checkpoint is and what to try next.
//!
//! It runs anywhere, from a checkout or an installed binary: the sample CSV and the
//! simulator's users are built into the binary and written into the demo's directory
//! (so the report and the checkpoint name a real file). "Try next" names the program as
//! it was invoked (`argv[0]`). A demo that cannot start leaves no directory behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

use crate::api::{ClientConfig, Credentials, RetryPolicy};
use crate::checkpoint::Identity;
use crate::cli::{Cli, Command, DemoArgs, LogFormat, StatusArgs};
use crate::commands::links::{self, config::LinksConfig};
use crate::commands::run::{RunConfig, config::Settings};
use crate::config::{Output, Workers};
use crate::error::AppError;
use crate::exit_code::ExitCode;
use crate::input::{DEFAULT_MAX_RECORD_BYTES, InputOptions, Source};
use crate::sandbox::{self, Faults, SeedUser};
use crate::secret::Secret;
use crate::shutdown::Shutdown;

/// Users the demo's simulator knows by id (for `--input samples/users.csv`, the export of
/// customers who are Podero users already).
const DEMO_USERS: &[u8] = include_bytes!("../../samples/sandbox-users.csv");
/// The sample export of new customers the demo onboards unless `--input` names another.
const DEMO_INPUT: &[u8] = include_bytes!("../../samples/new-customers.csv");

/// The customer of the sample export who is a Podero user already: found by CRM id.
const EXISTING_CUSTOMER: (&str, &str) = ("K-2024103", "jonas.wagner@example.de");

/// Runs the demo.
pub async fn demo(mut args: DemoArgs, shutdown: Shutdown) -> Result<ExitCode, AppError> {
    if let Some(input) = &args.input {
        std::fs::metadata(input).map_err(|e| {
            AppError::Usage(format!("cannot read --input {}: {e}", input.display()))
        })?;
    }
    let created = !args.dir.exists();
    let started = start(&mut args).await;
    if started.is_err() && created {
        // Nothing of the demo is in it yet: leave no empty directory behind.
        let _ = std::fs::remove_dir_all(&args.dir);
    }
    let (checkpoint, sandbox) = started?;
    eprintln!(
        "demo: simulator on {} (faults on: some 429s, 5xx and dropped responses)\n",
        sandbox.base_url()
    );
    let config = demo_config(&args, &sandbox.base_url(), &checkpoint);
    let code = super::run::run(config, shutdown.clone()).await?;
    let state = sandbox.state();
    let buildings: usize = state.buildings.values().map(Vec::len).sum();
    eprintln!(
        "\nsimulator: {} users, {buildings} buildings, {} duplicate buildings, {} CRM ids \
         held by two users, {} requests",
        state.users.len(),
        state.duplicates().len(),
        state.external_id_duplicates().len(),
        state.requests.values().sum::<u64>()
    );
    eprintln!("\nthe Connect links for the new buildings (links):\n");
    links_for(&args, &sandbox.base_url(), &checkpoint, shutdown).await?;
    eprintln!("\nwhere every customer stands (status):\n");
    super::status::status(&StatusArgs {
        checkpoint: checkpoint.clone(),
        json: false,
    })?;
    next_steps(&args, &checkpoint, code);
    Ok(match code {
        ExitCode::Success | ExitCode::RowsFailed => ExitCode::Success,
        other => other,
    })
}

fn next_steps(args: &DemoArgs, checkpoint: &Path, code: ExitCode) {
    let cp = checkpoint.display();
    let me = invoked_as();
    eprintln!(
        "\nthe run exited with {} ({}).\n\nTry next:\n  \
         {me} status --checkpoint {cp}\n  \
         {me} export --checkpoint {cp}\n  \
         {me} export --checkpoint {cp} --state failed\n  \
         less {}/report.csv {}/links.csv",
        code as i32,
        match code {
            ExitCode::Success => "every row done",
            ExitCode::RowsFailed => "some sample rows fail on purpose: see the report",
            _ => "see above",
        },
        args.dir.display(),
        args.dir.display()
    );
}

/// `links` on the demo's input, as a partner would run it after `run`.
async fn links_for(
    args: &DemoArgs,
    base_url: &str,
    checkpoint: &Path,
    shutdown: Shutdown,
) -> Result<ExitCode, AppError> {
    let org = sandbox::DEMO_ORG_ID.to_string();
    let rate = args.rate.to_string();
    let out = args.dir.join("links.csv");
    let argv = [
        "podero-onboard",
        "links",
        path(args.input.as_deref().expect("set by `start`")),
        "--checkpoint",
        path(checkpoint),
        "--base-url",
        base_url,
        "--org-id",
        &org,
        "--rate",
        &rate,
        "--language",
        "de",
        "--price-zone",
        "DE_LU",
        "--success-url",
        "https://partner.example/ok",
        "--cancel-url",
        "https://partner.example/cancel",
        "--out",
        path(&out),
    ];
    let cli = Cli::try_parse_from(argv).map_err(|e| AppError::Fatal(e.to_string()))?;
    let Command::Links(links_args) = cli.command else {
        unreachable!("the argv names the links command");
    };
    let env = |name: &str| match name {
        "PODERO_CLIENT_ID" => Some(sandbox::DEMO_CLIENT_ID.to_owned()),
        "PODERO_CLIENT_SECRET" => Some(sandbox::DEMO_CLIENT_SECRET.to_owned()),
        _ => None,
    };
    let config = LinksConfig::new(*links_args, &env)?;
    links::links(config, shutdown).await
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

/// The demo's directory with the built-in files, and the simulator; `args.input` is set.
async fn start(args: &mut DemoArgs) -> Result<(PathBuf, sandbox::Sandbox), AppError> {
    let checkpoint = prepare_dir(&args.dir)?;
    let write = |name: &str, bytes: &[u8]| {
        let path = args.dir.join(name);
        std::fs::write(&path, bytes)
            .map(|()| path)
            .map_err(|e| AppError::Usage(format!("cannot write {}: {e}", args.dir.display())))
    };
    let users = write("sandbox-users.csv", DEMO_USERS)?;
    if args.input.is_none() {
        args.input = Some(write("new-customers.csv", DEMO_INPUT)?);
    }
    let sandbox = start_simulator(&users).await?;
    Ok((checkpoint, sandbox))
}

/// The program as the user typed it (`argv[0]`): `podero-onboard` from the PATH,
/// `target/release/podero-onboard` from a checkout.
fn invoked_as() -> String {
    let program = std::env::args_os().next().unwrap_or_default();
    let program = program.to_string_lossy();
    if program.is_empty() {
        "podero-onboard".to_owned()
    } else if program.contains([' ', '\'', '"']) {
        format!("'{}'", program.replace('\'', "'\\''"))
    } else {
        program.into_owned()
    }
}

fn prepare_dir(dir: &Path) -> Result<PathBuf, AppError> {
    let io = |e: std::io::Error| AppError::Usage(format!("cannot use {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let checkpoint = dir.join("checkpoint.sqlite");
    // Each demo starts from scratch: the simulator forgets everything between runs.
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let mut name = checkpoint.clone().into_os_string();
        name.push(suffix);
        match std::fs::remove_file(&name) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
    }
    Ok(checkpoint)
}

async fn start_simulator(users: &Path) -> Result<sandbox::Sandbox, AppError> {
    let (crm, email) = EXISTING_CUSTOMER;
    let existing = SeedUser::new(crm, email).names("Jonas", "Wagner");
    let builder = sandbox::Builder::new()
        .users_from_csv(users)
        .map_err(|e| AppError::Fatal(format!("cannot read {}: {e}", users.display())))?
        .existing_users([existing])
        .seed(7)
        .faults(Faults {
            random_429: 0.03,
            random_5xx: 0.04,
            commit_then_drop: 0.05,
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(40),
            ..Faults::default()
        });
    builder
        .start()
        .await
        .map_err(|e| AppError::Fatal(format!("cannot start the simulator: {e}")))
}

fn demo_config(args: &DemoArgs, base_url: &str, checkpoint: &Path) -> RunConfig {
    RunConfig {
        input: InputOptions {
            source: Source::Path(args.input.clone().expect("set by `start`")),
            renames: Vec::new(),
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            format: Default::default(),
            default_building_name: None,
        },
        checkpoint: checkpoint.to_owned(),
        identity: Identity {
            org_id: sandbox::DEMO_ORG_ID,
            base_url: base_url.to_owned(),
        },
        client: Some(ClientConfig {
            base_url: base_url.to_owned(),
            org_id: sandbox::DEMO_ORG_ID,
            credentials: Credentials::Client {
                id: sandbox::DEMO_CLIENT_ID.to_owned(),
                secret: Secret::new(sandbox::DEMO_CLIENT_SECRET),
            },
            rate: args.rate,
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            retry: RetryPolicy::default(),
            pool_size: 4,
            ca_certs: Vec::new(),
        }),
        workers: Workers {
            concurrency: 4,
            grace: Duration::from_secs(10),
        },
        settings: Settings {
            plan: crate::commands::run::plan::Options {
                create_users: true,
                ..Default::default()
            },
            repost_unknown: false,
            settle: Duration::from_millis(200),
            max_posts: 5,
            adopt_existing: false,
            directory: Default::default(),
        },
        report: Some(args.dir.join("report.csv")),
        json: false,
        metrics_file: None,
        dry_run: false,
        strict: false,
        max_vanished: crate::commands::run::vanished::MaxVanished::Percent(100.0),
        output: Output {
            quiet: false,
            verbose: 0,
            log_format: LogFormat::Text,
            progress_interval: Duration::from_secs(2),
        },
    }
}
