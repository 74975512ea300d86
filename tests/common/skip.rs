//! Backend variants that cannot run on this machine are reported as skipped, never
//! passed off as passes: each skip prints a line with the running count.

use std::{
    io::Write,
    sync::atomic::{AtomicUsize, Ordering},
};

static SKIPPED: AtomicUsize = AtomicUsize::new(0);

/// Reports that the current test's `service` variant did not run because
/// `variable` is unset. Written to the process's stderr itself, because libtest
/// hides `eprintln!` output of passing tests.
pub fn skipped(service: &str, variable: &str) {
    let n = SKIPPED.fetch_add(1, Ordering::Relaxed) + 1;
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: its {service} variant did not run ({variable} is unset); \
         {n} backend variant(s) skipped in this test binary so far"
    );
}
