//! The allocator's settings (the binary makes mimalloc its global allocator).
//!
//! Two of mimalloc (v3)'s defaults hold memory the daemon no longer uses, which a burst of
//! large responses turns into RSS (the hostile-upstream test's 200 MB ceiling: 207 MB with
//! the defaults, 143 MB under glibc, 152 MB with both settings below):
//! - `purge_delay` (1 s): freed pages are given back to the OS only after it; purging at
//!   once keeps RSS tracking what is live, at a small cost per purge;
//! - `arena_eager_commit` (2: on Linux, commit a whole arena when it is reserved): with 0,
//!   an arena's memory is committed as it is used.

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (libmimalloc-sys has no
/// constant for it): the 16th option, after the deprecated ones. The test below checks
/// that this index still reads as the purge delay's default.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// `mi_option_arena_eager_commit`: the 5th option (no constant either).
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Makes mimalloc commit memory as it is used and give freed memory back at once. Call
/// first in `main`.
pub fn return_freed_memory_at_once() {
    // SAFETY: mi_option_set only stores an option value; any index and value are valid.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
    }
}

#[cfg(test)]
mod tests {
    /// The indices are the options meant: each reads back its v3 default unless the
    /// environment set it (the purge delay's 1000 ms is no other option's default).
    #[test]
    fn the_option_indices_read_their_defaults() {
        for (index, variable, default) in [
            (super::PURGE_DELAY, "MIMALLOC_PURGE_DELAY", 1000),
            (super::ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT", 2),
        ] {
            if std::env::var_os(variable).is_some() {
                continue;
            }
            // SAFETY: reading an option.
            let value = unsafe { libmimalloc_sys::mi_option_get(index) };
            assert_eq!(
                value, default,
                "option {index} is not the one {variable} sets"
            );
        }
    }
}
