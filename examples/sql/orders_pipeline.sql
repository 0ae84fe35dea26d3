-- weir's flagship pipeline: orders and their payments from Kafka, joined,
-- windowed and tracked per order, into four Kafka topics, exactly once.
--
--   cargo run -- -f examples/sql/orders_pipeline.sql
--
-- or from the shell, which reads statements ending with ';' from standard input
-- (Ctrl-C stops the jobs; each resumes from its latest checkpoint when started again):
--
--   cargo run < examples/sql/orders_pipeline.sql
--
-- The broker is 127.0.0.1:9092. To use another one, rewrite it on the way in:
--
--   sed 's/127.0.0.1:9092/broker.example.com:9092/' examples/sql/orders_pipeline.sql | cargo run
--
-- Topics (create them first; 3 partitions each is a good start):
--   in:  orders    {"order_id": 1, "customer_id": 7, "product": "mouse", "amount": 19.99,
--                   "order_time": "2024-01-01 00:00:00.000"}
--        payments  {"payment_id": 1, "order_id": 1, "amount": 19.99, "method": "card",
--                   "pay_time": "2024-01-01 00:03:12.500"}
--   out: paid_orders         orders paid within 15 minutes, with their payment (interval join)
--        unpaid_orders       orders not paid within 15 minutes (left interval join)
--        revenue_per_minute  1-minute windows of paid orders by payment time
--        order_status        created / paid / overdue per order: an upsert changelog keyed by
--                            order_id (a tombstone deletes a key); compact it or read it as a table
-- The outputs are written in Kafka transactions: read them with isolation.level=read_committed.
--
-- To fill the input topics with generated orders and payments (and run the same
-- queries from a Rust program), see examples/orders_pipeline.rs:
--
--   cargo run --example orders_pipeline -- --kafka 127.0.0.1:9092 --feed-only
--
-- Each INSERT is a job of its own (SHOW JOBS). Stop one with a savepoint, e.g. to
-- change its parallelism: STOP JOB '<id>' WITH SAVEPOINT; then SET 'parallelism.default'
-- and run its INSERT again: it resumes from the savepoint (the latest state of its
-- pipeline.name).

SET 'execution.checkpointing.interval' = '1 s';
SET 'execution.checkpointing.dir' = '/tmp/weir/orders-pipeline/checkpoints';
SET 'execution.checkpointing.savepoint-dir' = '/tmp/weir/orders-pipeline/savepoints';
SET 'state.backend.type' = 'rocksdb';
SET 'parallelism.default' = '2';

-- Inputs. Rows may be up to 5 seconds out of order; later ones are late (see below).
CREATE TABLE orders (
    order_id    BIGINT,
    customer_id BIGINT,
    product     STRING,
    amount      DOUBLE,
    order_time  TIMESTAMP(3),
    WATERMARK FOR order_time AS order_time - INTERVAL '5' SECOND
) WITH (
    'connector' = 'kafka',
    'topic' = 'orders',
    'properties.bootstrap.servers' = '127.0.0.1:9092',
    'scan.startup.mode' = 'earliest-offset',
    'format' = 'json'
);

CREATE TABLE payments (
    payment_id BIGINT,
    order_id   BIGINT,
    amount     DOUBLE,
    method     STRING,
    pay_time   TIMESTAMP(3),
    WATERMARK FOR pay_time AS pay_time - INTERVAL '5' SECOND
) WITH (
    'connector' = 'kafka',
    'topic' = 'payments',
    'properties.bootstrap.servers' = '127.0.0.1:9092',
    'scan.startup.mode' = 'earliest-offset',
    'format' = 'json'
);

-- Outputs.
CREATE TABLE paid_orders (
    order_id    BIGINT,
    customer_id BIGINT,
    product     STRING,
    amount      DOUBLE,
    order_time  TIMESTAMP(3),
    payment_id  BIGINT,
    method      STRING,
    pay_time    TIMESTAMP(3)
) WITH (
    'connector' = 'kafka',
    'topic' = 'paid_orders',
    'properties.bootstrap.servers' = '127.0.0.1:9092',
    'format' = 'json',
    'sink.delivery-guarantee' = 'exactly-once'
);

CREATE TABLE unpaid_orders (
    order_id    BIGINT,
    customer_id BIGINT,
    product     STRING,
    amount      DOUBLE,
    order_time  TIMESTAMP(3)
) WITH (
    'connector' = 'kafka',
    'topic' = 'unpaid_orders',
    'properties.bootstrap.servers' = '127.0.0.1:9092',
    'format' = 'json',
    'sink.delivery-guarantee' = 'exactly-once'
);

CREATE TABLE revenue_per_minute (
    window_start TIMESTAMP(3),
    window_end   TIMESTAMP(3),
    orders       BIGINT,
    revenue      DOUBLE,
    avg_amount   DOUBLE,
    max_amount   DOUBLE
) WITH (
    'connector' = 'kafka',
    'topic' = 'revenue_per_minute',
    'properties.bootstrap.servers' = '127.0.0.1:9092',
    'format' = 'json',
    'sink.delivery-guarantee' = 'exactly-once'
);

CREATE TABLE order_status (
    order_id    BIGINT,
    customer_id BIGINT,
    amount      DOUBLE,
    status      STRING,
    payment_id  BIGINT,
    pay_time    TIMESTAMP(3),
    PRIMARY KEY (order_id) NOT ENFORCED
) WITH (
    'connector' = 'upsert-kafka',
    'topic' = 'order_status',
    'properties.bootstrap.servers' = '127.0.0.1:9092',
    'key.format' = 'json',
    'value.format' = 'json',
    'sink.delivery-guarantee' = 'exactly-once'
);

-- Orders paid within 15 minutes: an interval join. Append-only; each side's
-- rows are kept only while the other side's watermark says a match can come.
CREATE VIEW order_payments AS
SELECT o.order_id, o.customer_id, o.product, o.amount, o.order_time,
       p.payment_id, p.method, p.pay_time
FROM orders o
JOIN payments p
  ON o.order_id = p.order_id
 AND p.pay_time BETWEEN o.order_time AND o.order_time + INTERVAL '15' MINUTE;

-- Orders not paid within 15 minutes: a left interval join emits an order
-- without a match, NULL-padded, once the watermark passes order_time + 15 min
-- (a late order at once).
CREATE VIEW overdue_orders AS
SELECT o.order_id, o.customer_id, o.product, o.amount, o.order_time
FROM orders o
LEFT JOIN payments p
  ON o.order_id = p.order_id
 AND p.pay_time BETWEEN o.order_time AND o.order_time + INTERVAL '15' MINUTE
WHERE p.payment_id IS NULL;

-- 1. paid_orders
SET 'pipeline.name' = 'paid_orders';
INSERT INTO paid_orders SELECT * FROM order_payments;

-- 2. unpaid_orders
SET 'pipeline.name' = 'unpaid_orders';
INSERT INTO unpaid_orders SELECT * FROM overdue_orders;

-- 3. revenue_per_minute: the join's output watermark is held back by the
-- interval, so its pay_time can be windowed.
SET 'pipeline.name' = 'revenue_per_minute';
INSERT INTO revenue_per_minute
SELECT window_start, window_end, count(*), round(sum(amount), 2), round(avg(amount), 2), max(amount)
FROM TABLE(TUMBLE(TABLE order_payments, DESCRIPTOR(pay_time), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end;

-- 4. order_status: regular (unbounded) joins, a changelog: 'created' when the
-- order arrives, 'paid' once any payment does (in time or not), 'overdue' once
-- it is known unpaid after 15 minutes. The upsert sink writes the latest row
-- per order_id.
SET 'pipeline.name' = 'order_status';
INSERT INTO order_status
SELECT o.order_id, o.customer_id, o.amount,
       CASE WHEN p.payment_id IS NOT NULL THEN 'paid'
            WHEN u.order_id IS NOT NULL THEN 'overdue'
            ELSE 'created' END,
       p.payment_id, p.pay_time
FROM orders o
LEFT JOIN payments p ON o.order_id = p.order_id
LEFT JOIN overdue_orders u ON o.order_id = u.order_id;
