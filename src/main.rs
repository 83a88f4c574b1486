//! The `hirehook` binary: choose the allocator, parse the command line, set up logging,
//! run.

use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: the daemon allocates and frees many small buffers
/// per event (parsing, bodies, HTTP, sled's nodes), and glibc's malloc and free were a
/// quarter of its CPU under load (BENCHMARKS.md § "The allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's settings must be in place before its first allocation reserves memory,
/// which happens before `main`: on Linux an ELF constructor sets them (see
/// `hirehook::alloc`); elsewhere `main` does, which still covers what is reserved later.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static SET_ALLOCATOR_OPTIONS: extern "C" fn() = set_allocator_options;

extern "C" fn set_allocator_options() {
    hirehook::alloc::return_freed_memory_at_once();
}

fn main() -> ExitCode {
    if !cfg!(target_os = "linux") {
        set_allocator_options();
    }
    hirehook::cli::main()
}
