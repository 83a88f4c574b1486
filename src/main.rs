//! The `hirehook` binary: parse the command line, set up logging, run.

use std::process::ExitCode;

fn main() -> ExitCode {
    hirehook::cli::main()
}
