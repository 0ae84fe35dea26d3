//! The real `weir` binary as a child process, for crash tests: started on a
//! SQL script (optionally with `FAILPOINTS`), and killed without mercy.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Starts `weir -f script`, logging warnings to a piped stderr; `failpoints`
/// is the `FAILPOINTS` value (e.g. `checkpoint-after-metadata=return`).
pub fn start(script: &Path, failpoints: Option<&str>) -> Child {
    spawn(script, failpoints, Stdio::piped())
}

/// Starts `weir -f script` logging warnings into the file `log` (appended),
/// for a run that may log more than a pipe holds before anyone reads it.
#[allow(dead_code)]
pub fn start_logging_to(script: &Path, log: &Path) -> Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    spawn(script, None, Stdio::from(file))
}

fn spawn(script: &Path, failpoints: Option<&str>, stderr: Stdio) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.arg("-f")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
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
#[allow(dead_code)]
pub fn stderr_of(child: &mut Child) -> String {
    let mut err = String::new();
    use std::io::Read;
    let _ = child.stderr.take().map(|mut s| s.read_to_string(&mut err));
    err
}

/// Runs `weir -f script` to its end; panics with its stderr unless it
/// exits successfully.
#[allow(dead_code)]
pub fn run_to_end(script: &Path) {
    let out = start(script, None).wait_with_output().expect("weir runs");
    assert!(
        out.status.success(),
        "{} failed: {}\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `weir` with no arguments and `sql` on its standard input (a pipe,
/// which the shell reads as a script) to its end; panics with its stderr
/// unless it exits successfully. Returns what it printed on stdout.
#[allow(dead_code)]
pub fn run_stdin_to_end(sql: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_LOG", "warn")
        .env_remove("FAILPOINTS")
        .spawn()
        .expect("weir starts");
    let mut stdin = child.stdin.take().expect("a piped stdin");
    stdin
        .write_all(sql.as_bytes())
        .expect("write the script to weir's stdin");
    // End of input: the shell runs what it read.
    drop(stdin);
    let out = child.wait_with_output().expect("weir runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "weir < script failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
