//! `completions`: the shell completion script, from the CLI's definition.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::exit_code::ExitCode;

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> ExitCode {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "podero-onboard",
        &mut std::io::stdout(),
    );
    ExitCode::Success
}
