//! The `hirehook` binary: parse the command line, set up logging, run.

use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: a delivery allocates and frees many small buffers
/// (headers, bodies, JSON values) across threads, where glibc's allocator spent about a
/// quarter of the daemon's CPU under load (profiled with `perf`, BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    hirehook::cli::main()
}
