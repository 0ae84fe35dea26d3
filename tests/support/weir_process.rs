//! The real `weir` binary as a child process, for crash tests: started on a
//! SQL script (optionally with `FAILPOINTS`), and killed without mercy.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Starts `weir -f script`, logging warnings to a piped stderr; `failpoints`
/// is the `FAILPOINTS` value (e.g. `checkpoint-after-metadata=return`).
pub fn start(script: &Path, failpoints: Option<&str>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.arg("-f")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env("RUST_LOG", "warn");
    match failpoints {
        Some(f) => cmd.env("FAILPOINTS", f),
        None => cmd.env_remove("FAILPOINTS"),
    };
    cmd.spawn().expect("weir starts")
}

/// SIGKILL: no destructor, no flush, no graceful anything.
pub fn sigkill(child: &mut Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();
}

/// What the child wrote to stderr (after it ended).
pub fn stderr_of(child: &mut Child) -> String {
    let mut err = String::new();
    use std::io::Read;
    let _ = child.stderr.take().map(|mut s| s.read_to_string(&mut err));
    err
}
