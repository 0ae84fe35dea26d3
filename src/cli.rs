//! The `weir` command line: an interactive SQL shell, or a script runner.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use clap::Parser;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Config, Editor};
use weir::{Engine, JobHandle, JobStatus, StatementResult};
use weir_sql::parser::{is_complete, parse_statements};

/// weir: a streaming SQL engine with exactly-once sinks.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about)]
struct Args {
    /// Run the statements of this SQL script, then wait for the jobs it started.
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Run these statements (like -f, from the command line).
    #[arg(short = 'e', long = "execute", conflicts_with = "file")]
    execute: Option<String>,
    /// Set a configuration key before running anything: --set parallelism.default=4
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Configuration file (TOML, Flink's key names: `execution.checkpointing.interval = "10 s"`,
    /// or `[execution.checkpointing]` tables). Default: ./weir.toml if it exists.
    #[arg(long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Start jobs from this savepoint or checkpoint (sets execution.savepoint.path).
    #[arg(long = "restore", value_name = "PATH")]
    restore: Option<String>,
    /// Do not resume jobs from their latest checkpoint: start fresh
    /// (sets execution.state-recovery.from-latest = false).
    #[arg(long = "fresh", conflicts_with = "restore")]
    fresh: bool,
    /// History file of the interactive shell.
    #[arg(long)]
    history: Option<PathBuf>,
}

fn main() {
    // Crash tests configure protocol failpoints through FAILPOINTS (debug builds only).
    #[cfg(debug_assertions)]
    let _failpoints = fail::FailScenario::setup();
    init_logging();
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = runtime.block_on(run(args));
    // Jobs still running (the user chose to exit) are dropped with the runtime.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    std::process::exit(code);
}

/// Log lines (checkpoint failures, restores, restarts) go to stderr;
/// `RUST_LOG` selects them (default: warnings).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Precedence, lowest first: built-in defaults, the configuration file,
/// command-line flags (`--set`, `--restore`, `--fresh`), then `SET` statements.
async fn run(args: Args) -> i32 {
    let mut builder = Engine::builder();
    let config_file = args.config.clone().or_else(|| {
        let default = PathBuf::from("weir.toml");
        default.exists().then_some(default)
    });
    if let Some(path) = &config_file {
        match weir::config_file::read_config_file(path) {
            Ok(pairs) => {
                for (k, v) in pairs {
                    builder = builder.with_config(k, v);
                }
            }
            Err(e) => {
                eprintln!("[ERROR] {e}");
                return 2;
            }
        }
    }
    if let Some(path) = &args.restore {
        builder = builder.with_config("execution.savepoint.path", path.clone());
    }
    if args.fresh {
        builder = builder.with_config("execution.state-recovery.from-latest", "false");
    }
    for kv in &args.set {
        let Some((k, v)) = kv.split_once('=') else {
            eprintln!("[ERROR] --set expects KEY=VALUE, got '{kv}'");
            return 2;
        };
        builder = builder.with_config(k.trim(), v.trim());
    }
    let engine = match builder.build() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("[ERROR] {e}");
            return 2;
        }
    };
    // From here on Ctrl-C is ours: it cancels queries instead of killing weir.
    let interrupts = Interrupts::install();
    let script = match (&args.file, &args.execute) {
        (Some(path), _) => match std::fs::read_to_string(path) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("[ERROR] cannot read {}: {e}", path.display());
                return 2;
            }
        },
        (None, Some(sql)) => Some(sql.clone()),
        (None, None) if !std::io::stdin().is_terminal() => {
            let mut s = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut s) {
                eprintln!("[ERROR] cannot read standard input: {e}");
                return 2;
            }
            Some(s)
        }
        (None, None) => None,
    };
    match script {
        Some(sql) => run_script(&engine, &sql, &interrupts).await,
        None => repl(&engine, args.history, &interrupts).await,
    }
}

/// Counts Ctrl-C presses; each wait sees only presses after it started.
#[derive(Clone)]
struct Interrupts {
    rx: tokio::sync::watch::Receiver<u64>,
}

impl Interrupts {
    fn install() -> Self {
        let (tx, rx) = tokio::sync::watch::channel(0u64);
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            loop {
                #[cfg(unix)]
                let terminated = async {
                    match term.as_mut() {
                        Some(t) => t.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let terminated = std::future::pending::<Option<()>>();
                tokio::select! {
                    r = tokio::signal::ctrl_c() => if r.is_err() { break },
                    _ = terminated => {},
                }
                tx.send_modify(|n| *n += 1);
            }
        });
        Interrupts { rx }
    }

    /// Resolves at the next Ctrl-C (or SIGTERM).
    async fn next(&self) {
        let mut rx = self.rx.clone();
        rx.borrow_and_update();
        let _ = rx.changed().await;
    }
}

async fn run_script(engine: &Engine, sql: &str, interrupts: &Interrupts) -> i32 {
    let statements = match parse_statements(sql) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("[ERROR] {}", weir::Error::from(e));
            return 1;
        }
    };
    let mut jobs = Vec::new();
    for stmt in statements {
        match engine.execute_statement(stmt).await {
            Ok(result) => {
                if let Some(job) = show(result, interrupts).await {
                    jobs.push(job);
                }
            }
            Err(e) => {
                eprintln!("[ERROR] {e}");
                return 1;
            }
        }
    }
    wait_for_jobs(&jobs, interrupts).await
}

/// Waits for the script's jobs; Ctrl-C stops them gracefully.
async fn wait_for_jobs(jobs: &[JobHandle], interrupts: &Interrupts) -> i32 {
    let mut code = 0;
    for job in jobs {
        let status = tokio::select! {
            s = job.wait() => s,
            _ = interrupts.next() => {
                eprintln!("[INFO] Stopping {} job(s)...", jobs.len());
                for j in jobs {
                    j.stop();
                }
                job.wait().await
            }
        };
        match status {
            Ok(s) => eprintln!("[INFO] Job '{}' ({}) {}.", job.id(), job.name(), s.name()),
            Err(e) => {
                eprintln!("[ERROR] {}", weir::Error::from(e));
                code = 1;
            }
        }
    }
    for job in jobs {
        if let JobStatus::Failed(_) = job.status() {
            code = 1;
        }
    }
    code
}

/// Prints a statement's result; a query is streamed until it ends or Ctrl-C.
async fn show(result: StatementResult, interrupts: &Interrupts) -> Option<JobHandle> {
    match result {
        StatementResult::Ok(msg) => println!("[INFO] {msg}"),
        StatementResult::Text(text) => println!("{}", text.trim_end()),
        StatementResult::Table(batch) => match weir::format::table(&[batch]) {
            Ok(t) => println!("{t}"),
            Err(e) => eprintln!("[ERROR] {e}"),
        },
        StatementResult::Job(job) => {
            println!(
                "[INFO] Submitted job '{}' ({}). SHOW JOBS shows its progress; STOP JOB '{}' stops it.",
                job.id(),
                job.name(),
                job.id()
            );
            return Some(job);
        }
        StatementResult::Query(mut query) => {
            let mut header_printed = false;
            let mut rows = 0usize;
            loop {
                let next = tokio::select! {
                    b = query.next_batch() => b,
                    _ = interrupts.next() => {
                        query.cancel();
                        println!("[INFO] Query cancelled.");
                        break;
                    }
                };
                match next {
                    None => break,
                    Some(Err(e)) => {
                        eprintln!("[ERROR] {e}");
                        break;
                    }
                    Some(Ok(batch)) => {
                        let view = match weir::format::changelog_view(&batch) {
                            Ok(v) => v,
                            Err(e) => {
                                eprintln!("[ERROR] {e}");
                                break;
                            }
                        };
                        let mut out = std::io::stdout().lock();
                        if !header_printed {
                            let names: Vec<String> =
                                view.schema().fields().iter().map(|f| f.name().clone()).collect();
                            let _ = writeln!(out, "{}", names.join(" | "));
                            header_printed = true;
                        }
                        if let Ok(lines) = weir::format::rows(&view) {
                            rows += lines.len();
                            for line in lines {
                                let _ = writeln!(out, "{}", line.join(" | "));
                            }
                        }
                        let _ = out.flush();
                    }
                }
            }
            if !header_printed {
                let names: Vec<String> = query.schema().fields().iter().map(|f| f.name().clone()).collect();
                println!("{}", names.join(" | "));
            }
            println!("[INFO] {rows} row(s).");
        }
    }
    None
}

async fn repl(engine: &Engine, history: Option<PathBuf>, interrupts: &Interrupts) -> i32 {
    println!(
        "weir {} — streaming SQL. Type HELP; for help, end statements with ';', Ctrl-D to exit.",
        env!("CARGO_PKG_VERSION")
    );
    let history =
        history.or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".weir_history")));
    let config = Config::builder().auto_add_history(false).build();
    let mut editor: Editor<(), DefaultHistory> = match Editor::with_config(config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("[ERROR] cannot open the terminal: {e}");
            return 2;
        }
    };
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() { "weir> " } else { "   -> " };
        // rustyline blocks: read on a blocking thread, keep the runtime free for jobs.
        let (ed, line) = match tokio::task::spawn_blocking(move || {
            let line = editor.readline(prompt);
            (editor, line)
        })
        .await
        {
            Ok(v) => v,
            Err(_) => return 1,
        };
        editor = ed;
        match line {
            Ok(line) => {
                if !buffer.is_empty() {
                    buffer.push('\n');
                }
                buffer.push_str(&line);
                let trimmed = buffer.trim();
                let bare_help = trimmed.eq_ignore_ascii_case("help")
                    || trimmed.eq_ignore_ascii_case("exit")
                    || trimmed.eq_ignore_ascii_case("quit");
                if trimmed.is_empty() || !(is_complete(&buffer) || bare_help) {
                    continue;
                }
                let _ = editor.add_history_entry(buffer.trim());
                if let Some(h) = &history {
                    let _ = editor.save_history(h);
                }
                let sql = std::mem::take(&mut buffer);
                let word = sql.trim().trim_end_matches(';').trim().to_ascii_lowercase();
                if word == "exit" || word == "quit" {
                    break;
                }
                let sql = if word == "help" { "HELP;".to_string() } else { sql };
                match parse_statements(&sql) {
                    Err(e) => eprintln!("[ERROR] {}", weir::Error::from(e)),
                    Ok(statements) => {
                        for stmt in statements {
                            match engine.execute_statement(stmt).await {
                                Ok(result) => {
                                    show(result, interrupts).await;
                                }
                                Err(e) => {
                                    eprintln!("[ERROR] {e}");
                                    break;
                                }
                            }
                        }
                    }
                }
            }
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("[ERROR] {e}");
                return 1;
            }
        }
    }
    let running: Vec<JobHandle> = engine
        .jobs()
        .into_iter()
        .filter(|j| !j.status().is_terminal())
        .collect();
    if !running.is_empty() {
        eprintln!("[INFO] Stopping {} running job(s).", running.len());
        for j in &running {
            j.stop();
        }
        for j in &running {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), j.wait()).await;
        }
    }
    0
}
