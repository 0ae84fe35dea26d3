//! The `weir` binary: scripts with -f / -e / stdin, exit codes, error positions.

use std::io::Write;
use std::process::{Command, Stdio};

fn weir(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("weir runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_script_runs_its_statements_and_waits_for_its_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("job.sql");
    std::fs::write(
        &script,
        "CREATE TABLE t (id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH (\n\
           'connector' = 'datagen', 'number-of-rows' = '100', 'fields.id.kind' = 'sequence',\n\
           'fields.id.start' = '1', 'fields.id.end' = '100', 'event-time.start' = '2024-01-01 00:00:00', 'event-time.step' = '1 s');\n\
         CREATE TABLE out1 (window_start TIMESTAMP(3), c BIGINT, s BIGINT) WITH ('connector' = 'print');\n\
         INSERT INTO out1 SELECT window_start, count(*), sum(id) FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end;\n",
    )
    .unwrap();
    let (code, stdout, stderr) = weir(&["-f", script.to_str().unwrap()], "");
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    // 100 rows one second apart: [00:00, 01:00) holds ids 1..=60, [01:00, 02:00) ids 61..=100.
    assert!(stdout.contains("+I[2024-01-01T00:00:00, 60, 1830]"), "{stdout}");
    assert!(stdout.contains("+I[2024-01-01T00:01:00, 40, 3220]"), "{stdout}");
    assert!(stderr.contains("FINISHED"), "{stderr}");
}

#[test]
fn a_script_stops_at_the_first_error_with_its_position() {
    let sql = "SELECT 1;\nCREATE TABLE t (a INT) WITH ('connector' = 'datagen');\nSELECT a FROM t WHERE;\nSELECT 2;\n";
    let (code, stdout, stderr) = weir(&["-e", sql], "");
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("line 3, column"), "{stderr}");
    assert!(
        !stdout.contains("Table 't' created"),
        "nothing runs when the script does not parse: {stdout}"
    );
}

#[test]
fn a_planning_error_exits_non_zero_after_earlier_statements_ran() {
    let sql = "CREATE TABLE t (a INT) WITH ('connector' = 'datagen', 'number-of-rows' = '1');\nSELECT nope FROM t;\nSELECT 2;\n";
    let (code, stdout, stderr) = weir(&["-e", sql], "");
    assert_eq!(code, 1);
    assert!(stdout.contains("Table 't' created"), "{stdout}");
    assert!(stderr.contains("nope"), "{stderr}");
    assert!(!stdout.contains("| 2"), "stops at the first error: {stdout}");
}

#[test]
fn statements_from_standard_input() {
    let (code, stdout, stderr) = weir(
        &[],
        "SET 'parallelism.default' = '2';\nSELECT 40 + 2 AS answer;\nHELP;\n",
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("answer\n42"), "{stdout}");
    assert!(
        stdout.contains("TUMBLE"),
        "HELP lists the window functions: {stdout}"
    );
}

#[test]
fn unknown_flags_and_settings_are_reported() {
    let (code, _, stderr) = weir(&["--set", "parallelism.default=zero", "-e", "SELECT 1;"], "");
    assert_eq!(code, 2);
    assert!(stderr.contains("parallelism.default"), "{stderr}");
}
