use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = podero_onboard::cli::Cli::parse();
    podero_onboard::main(cli).into()
}
