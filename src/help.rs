//! The text of `HELP`.

/// What `HELP` prints.
pub const HELP: &str = "\
weir: streaming SQL. Statements end with ';'. Ctrl-C cancels a running query, Ctrl-D exits.

  CREATE TABLE t (col TYPE, ..., WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
      WITH ('connector' = 'datagen' | 'nexmark' | 'orders' | 'filesystem' | 'print' | 'blackhole', ...);
  CREATE VIEW v AS SELECT ...;            DROP TABLE t;  DROP VIEW v;
  SHOW TABLES;  SHOW VIEWS;  SHOW FUNCTIONS;  DESCRIBE t;
  SELECT ...;                             results stream in as a changelog (op: +I -U +U -D)
  INSERT INTO sink SELECT ...;            starts a background job
  SHOW JOBS;  STOP JOB '<id>';  CANCEL JOB '<id>';
  EXPLAIN SELECT ...;                     the operator graph, parallelism and partitioning
  SET 'parallelism.default' = '4';  SET;  RESET;  RESET 'key';

Fault tolerance (Flink's keys; SET lists them all):
  SET 'execution.checkpointing.interval' = '10 s';  SET 'execution.checkpointing.dir' = '/path';
  SET 'state.backend.type' = 'hashmap' | 'rocksdb';  SET 'restart-strategy.type' = 'fixed-delay';
  SHOW CHECKPOINTS [FOR JOB '<id>'];      TRIGGER CHECKPOINT '<id>';
  TRIGGER SAVEPOINT '<id>' [TO '/dir'];   STOP JOB '<id>' WITH SAVEPOINT [TO '/dir'];
  SET 'execution.savepoint.path' = '/dir/savepoint-...';  then INSERT: the job starts from it
  A job with a checkpoint directory resumes from its latest checkpoint (weir --fresh: start over).

Windows (Flink's window table functions), aggregated with GROUP BY window_start, window_end, ...:
  TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
  TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND, INTERVAL '1' MINUTE))
  TABLE(SESSION(TABLE t, DESCRIPTOR(ts), INTERVAL '30' SECOND))
  TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND, INTERVAL '1' MINUTE))
";
