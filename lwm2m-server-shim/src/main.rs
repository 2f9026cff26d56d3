//! `lwm2m-server-shim`: the test LwM2M server's command line.

use clap::{Parser, Subcommand};

mod cli;

use cli::{
    author as author_cli, conformance as conformance_cli, demo as demo_cli, serve as serve_cli,
    update as update_cli,
};

/// Test LwM2M server that drives secure firmware updates (Object 5 + SUIT).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// End-to-end signed firmware update on loopback: starts the shim and a simulated device
    /// (`lwm2m-client` next to this binary), builds and signs a 2.0.0 package, pulls it onto the
    /// device with progress and prints the final State, Update Result and firmware version.
    Demo(demo_cli::DemoArgs),
    /// Run the LwM2M server: CoAP registration interface and package host, Leshan-compatible
    /// REST API and event stream over HTTP.
    Serve(serve_cli::ServeArgs),
    /// Generate a P-256 signing key (PKCS#8 PEM) and its public key (`<stem>.pub.pem`).
    Keygen(author_cli::KeygenArgs),
    /// Build, inspect or verify signed SUIT firmware packages.
    #[command(subcommand)]
    Package(author_cli::PackageCommand),
    /// Firmware campaign: start a shim, wait for the devices, pull or push a package, Execute,
    /// wait for the reboot, report State / Update Result per device (non-zero on any failure).
    Update(update_cli::UpdateArgs),
    /// Conformance run against any LwM2M client: OMA ETS firmware cases 751-780 and the core
    /// client cases a server can drive, with the device's own packages or SUIT packages for
    /// lwm2m-client; a table of case, verdict and evidence, JUnit XML and JSON reports;
    /// non-zero only when a case FAILs.
    Conformance(conformance_cli::ConformanceArgs),
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Keygen(args) => std::process::exit(exit_code(author_cli::keygen(args))),
        Command::Package(cmd) => std::process::exit(exit_code(author_cli::package(cmd))),
        Command::Serve(args) => std::process::exit(exit_code(serve_cli::serve(args))),
        Command::Update(args) => std::process::exit(exit_code(update_cli::update(args))),
        Command::Conformance(args) => {
            std::process::exit(exit_code(conformance_cli::conformance(args)))
        }
        Command::Demo(args) => std::process::exit(exit_code(demo_cli::demo(args))),
    }
}

/// Prints a failure as the one line a user reads (`error: ...`) and returns the failure status.
fn fail(message: impl std::fmt::Display) -> std::process::ExitCode {
    eprintln!("error: {message}");
    std::process::ExitCode::FAILURE
}

/// Maps the author commands' result to a process status.
fn exit_code(code: std::process::ExitCode) -> i32 {
    i32::from(code != std::process::ExitCode::SUCCESS)
}
