//! The `hirehook` binary: parse the command line, set up logging, run.

use std::process::ExitCode;

/// jemalloc instead of glibc's malloc: a delivery allocates and frees many small buffers
/// (headers, bodies, JSON values) across threads, where glibc's allocator spent about a
/// quarter of the daemon's CPU under load (profiled with `perf`; BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main`: freed pages go back to the system at once
/// (no decay), so peak RSS stays what the data needs (the hostile-upstream bound holds).
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 34] = b"dirty_decay_ms:0,muzzy_decay_ms:0\0";

fn main() -> ExitCode {
    hirehook::cli::main()
}
