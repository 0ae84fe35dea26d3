//! Feeds thousands of mangled variants of valid statements to the parser: it must never panic,
//! and every error position must lie inside the input.

use crate::parser::{is_complete, parse_statements, split_statements};

/// Valid statements of every kind (each must parse).
const CORPUS: &[&str] = &[
    "CREATE TABLE orders (id BIGINT NOT NULL, price DECIMAL(10, 2), cost AS price * 2, \
     ts TIMESTAMP(3) METADATA FROM 'timestamp' VIRTUAL, m MAP<STRING, ARRAY<ROW<a INT>>>, \
     r ROW(x INT, y STRING), l TIMESTAMP_LTZ(3), \
     WATERMARK FOR ts AS ts - INTERVAL '5' SECOND, PRIMARY KEY (id) NOT ENFORCED) \
     PARTITIONED BY (id) WITH ('connector' = 'kafka', 'topic' = 'o')",
    "SELECT window_start, COUNT(*) FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), \
     INTERVAL '10' MINUTES)) AS w GROUP BY window_start, window_end",
    "SELECT * FROM TABLE(HOP(DATA => TABLE t, TIMECOL => DESCRIPTOR(ts), \
     SLIDE => INTERVAL '1' MINUTE, SIZE => INTERVAL '5' MINUTE)) a JOIN \
     TABLE(SESSION(TABLE s PARTITION BY (k, j), DESCRIPTOR(ts), INTERVAL '1' SECOND)) b ON a.k = b.k",
    "WITH c AS (SELECT * FROM TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE, \
     INTERVAL '1' HOUR))) SELECT * FROM c WHERE x IN (SELECT y FROM u)",
    "INSERT INTO sink (a, b) SELECT a, CAST(b AS TIMESTAMP(3) WITH LOCAL TIME ZONE) FROM t WHERE a > 1",
    "CREATE TEMPORARY VIEW IF NOT EXISTS v (a) AS SELECT `select` FROM \"T\"",
    "EXPLAIN PLAN FOR SELECT 1",
    "SET 'execution.checkpointing.interval' = '10s'",
    "SET restart-strategy.type = fixed-delay",
    "RESET 'a.b'",
    "SHOW JOBS",
    "DESCRIBE db.t",
    "DROP TABLE IF EXISTS a, b",
    "STOP JOB 'abc' WITH SAVEPOINT",
    "CANCEL JOB 'abc'",
    "HELP",
    "VALUES (1, 'a'), (2, 'b')",
    "SELECT a /* c; */, 'x;y' -- z;\n FROM t",
];

/// Fragments that are likely to confuse a parser.
const SNIPPETS: &[&str] = &[
    "(",
    ")",
    ",",
    "'",
    "\"",
    "`",
    ";",
    "--",
    "/*",
    "*/",
    "TABLE(",
    "TUMBLE(",
    "HOP(",
    "DESCRIPTOR(",
    "WATERMARK",
    "FOR",
    "AS",
    "=>",
    "<",
    ">",
    ">>",
    "METADATA",
    "VIRTUAL",
    "WITH (",
    "INTERVAL",
    "'1'",
    "MINUTES",
    " ",
    "\n",
    "\t",
    "é",
    "日本",
    "$$",
    "SELECT",
    "ROW<",
    "ROW(",
    "MAP<",
    "TIMESTAMP_LTZ(",
    "TIMESTAMP",
    "PRIMARY KEY",
    "EXPLAIN",
    "SET",
    "=",
    "PARTITION BY",
    "NOT ENFORCED",
    "0",
    "-",
    ".",
    "*",
    "\\",
    "\u{0}",
];

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// A random char boundary of `s`.
fn boundary(rng: &mut Rng, s: &str) -> usize {
    let boundaries: Vec<usize> = s
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(s.len()))
        .collect();
    boundaries[rng.below(boundaries.len())]
}

fn mutate(rng: &mut Rng, input: &str) -> String {
    let mut s = input.to_string();
    for _ in 0..=rng.below(3) {
        match rng.below(5) {
            0 => {
                let at = boundary(rng, &s);
                s.truncate(at);
            }
            1 => {
                let (a, b) = (boundary(rng, &s), boundary(rng, &s));
                s.replace_range(a.min(b)..a.max(b), "");
            }
            2 | 3 => {
                let at = boundary(rng, &s);
                s.insert_str(at, SNIPPETS[rng.below(SNIPPETS.len())]);
            }
            _ => {
                let (a, b) = (boundary(rng, &s), boundary(rng, &s));
                let piece = s[a.min(b)..a.max(b)].to_string();
                let at = boundary(rng, &s);
                s.insert_str(at, &piece);
            }
        }
    }
    s
}

fn check(input: &str) {
    let lines = input.split('\n').count() as u64;
    if let Err(e) = parse_statements(input) {
        if let Some(line) = e.line {
            assert!(
                (1..=lines).contains(&line),
                "line {line} outside the input ({lines} lines) for {input:?}: {e}"
            );
        }
        if let Some(column) = e.column {
            assert!(column >= 1, "column {column} for {input:?}: {e}");
        }
        assert!(!e.message.is_empty());
    }
    let _ = is_complete(input);
    let _ = split_statements(input);
}

#[test]
fn corpus_is_valid() {
    for sql in CORPUS {
        parse_statements(sql).unwrap_or_else(|e| panic!("{sql:?}: {e}"));
    }
    parse_statements(&CORPUS.join(";\n")).unwrap();
}

#[test]
fn mangled_statements_never_panic() {
    let mut rng = Rng(0x5EED_CAFE_F00D_D00D);
    for i in 0..10_000 {
        let base = CORPUS[i % CORPUS.len()];
        let input = mutate(&mut rng, base);
        check(&input);
    }
}

#[test]
fn every_prefix_of_every_statement_never_panics() {
    for sql in CORPUS {
        for (at, _) in sql.char_indices() {
            check(&sql[..at]);
        }
    }
}

#[test]
fn deep_but_allowed_nesting_does_not_overflow_the_stack() {
    // run on a thread with a small stack, like a tokio worker or a test thread
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(|| {
            let depth = crate::parser::lexer::MAX_NESTING - 1;
            for (open, close) in [
                ("ARRAY<", ">"),
                ("MAP<INT, ", ">"),
                ("ROW<a ", ">"),
                ("ROW(a ", ")"),
            ] {
                let sql = format!(
                    "CREATE TABLE t (a {}INT{})",
                    open.repeat(depth),
                    close.repeat(depth)
                );
                check(&sql);
            }
            let sql = format!(
                "SELECT CAST(a AS {}INT{})",
                "ARRAY<".repeat(depth - 1),
                ">".repeat(depth - 1)
            );
            check(&sql);
            for n in [40, 60, 200] {
                check(&format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n)));
                check(&format!("SELECT * FROM {}t{}", "(".repeat(n), ")".repeat(n)));
                check(&format!("SELECT {}1", "NOT ".repeat(n)));
                check(&format!("SELECT {}1", "- ".repeat(n)));
                check(&format!(
                    "SELECT {} 1 {}",
                    "CASE WHEN a THEN".repeat(n),
                    "END".repeat(n)
                ));
            }
        })
        .unwrap();
    handle.join().expect("parser thread crashed");
}
