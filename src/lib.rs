//! podero-onboard: onboard an existing customer base into the Podero platform.
//!
//! Where things are: every command in [`commands`] (one module or folder each; `run`'s
//! recipe is `commands/run/mod.rs`). `run` and `links` share the `engine` (paged
//! per-user jobs, the drive loop, connecting, exit codes) and the [`checkpoint`] (all SQL
//! and the one writer thread). Underneath: [`cli`] (what the user typed) and `config`
//! (what `run` and `links` share, validated), [`input`] (CSV → validated rows), [`api`]
//! (the Podero client: one gate, retries, breaker), `report` (summaries, CSV, JSON
//! lines), `progress`, `shutdown`, `secret`, `logging`, `error`, [`exit_code`].
//! The [`sandbox`] is a Podero simulator that shares no code with [`api`], so tests
//! against it catch client mistakes.

pub mod api;
pub mod bidi;
pub mod checkpoint;
pub mod cli;
pub mod commands;
pub(crate) mod config;
pub(crate) mod date;
pub(crate) mod engine;
pub(crate) mod error;
pub mod exit_code;
pub mod files;
pub mod input;
pub(crate) mod logging;
pub(crate) mod progress;
pub(crate) mod report;
pub mod sandbox;
pub(crate) mod secret;
pub(crate) mod shutdown;

use cli::{Cli, Command};
use commands::{completions, demo, export, links, run, status};
use error::AppError;
use exit_code::ExitCode;

/// Runs a parsed command line to its exit code, printing any error once.
pub fn main(cli: Cli) -> ExitCode {
    match dispatch(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            error.exit_code()
        }
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode, AppError> {
    match cli.command {
        Command::Run(args) => {
            logging::init(
                args.output.verbose,
                args.output.quiet,
                args.output.log_format,
            );
            let config = run::RunConfig::new(*args, &config::process_env)?;
            raise_malloc_trim_threshold();
            on_one_thread(async { run::run(config, signals()?).await })
        }
        Command::Links(args) => {
            logging::init(
                args.output.verbose,
                args.output.quiet,
                args.output.log_format,
            );
            let config = links::config::LinksConfig::new(*args, &config::process_env)?;
            on_one_thread(async { links::links(config, signals()?).await })
        }
        Command::Demo(args) => {
            logging::init(0, false, cli::LogFormat::Text);
            runtime()?.block_on(async { demo::demo(args, signals()?).await })
        }
        Command::Sandbox(args) => {
            logging::init(1, false, cli::LogFormat::Text);
            runtime()?
                .block_on(commands::sandbox::run_standalone(*args))
                .map(|()| ExitCode::Success)
                .map_err(|e| AppError::Fatal(format!("{e:#}")))
        }
        Command::Status(args) => status::status(&args),
        Command::Export(args) => export::export(&args),
        Command::Completions { shell } => Ok(completions::completions(shell)),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, AppError> {
    build(tokio::runtime::Builder::new_multi_thread())
}

fn build(mut builder: tokio::runtime::Builder) -> Result<tokio::runtime::Runtime, AppError> {
    builder
        .enable_all()
        .build()
        .map_err(|e| AppError::Fatal(format!("cannot start the async runtime: {e}")))
}

/// Runs `run` or `links` on a current-thread runtime: the drive loop, the request tasks
/// and hyper's connection tasks all on the main thread, the checkpoint writer on its own.
/// On the multi-threaded runtime every request and response crossed threads (work
/// stealing, waking the other worker's I/O driver): the HTTP alone cost 0.070 CPU-ms and
/// 1.5 context switches per row there against 0.035 ms and none on one thread
/// (`examples/http_floor.rs`, issue 25). One thread is also plenty for any rate the API
/// allows: the job waits for the network and the writer, it does not compute.
fn on_one_thread<F>(job: F) -> Result<ExitCode, AppError>
where
    F: Future<Output = Result<ExitCode, AppError>>,
{
    build(tokio::runtime::Builder::new_current_thread())?.block_on(job)
}

/// Makes glibc's malloc keep freed memory instead of handing it back to the kernel after
/// every statement. SQLite builds a small ephemeral b-tree for the checkpoint's
/// `CHECK (state IN (...))` on every row write and frees it at once; with the default
/// 128 KiB trim threshold the writer thread's arena was trimmed (`madvise`) 0.75 times per
/// row, each a TLB shootdown across both cores: 7 % of a first run's CPU (perf, issue 13).
/// Freeing one block above the mmap threshold is glibc's documented trigger for raising
/// both thresholds dynamically (mallopt(3), "M_TRIM_THRESHOLD"): the trim threshold becomes
/// twice the block, 8 MiB. Other allocators ignore this; it costs one mmap and munmap.
fn raise_malloc_trim_threshold() {
    const BLOCK: usize = 4 << 20;
    drop(std::hint::black_box(Vec::<u8>::with_capacity(BLOCK)));
}

fn signals() -> Result<shutdown::Shutdown, AppError> {
    shutdown::Shutdown::on_signals()
        .map_err(|e| AppError::Fatal(format!("cannot listen for signals: {e}")))
}
