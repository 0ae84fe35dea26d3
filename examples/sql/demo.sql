-- weir's main demo: the orders ⋈ payments pipeline of
-- examples/sql/orders_pipeline.sql, on orders and payments generated
-- in-process (no external service), printed live.
--
--   cargo run -- -f examples/sql/demo.sql
--
-- It runs for about 30 seconds (1500 orders at 50 per second; event time runs
-- 2 s per order, so the 15-minute payment deadline passes in 9 s of wall
-- time); Ctrl-C stops it early. Printed:
--   revenue>   1-minute windows of orders paid within 15 minutes (interval join + TUMBLE)
--   unpaid>    orders not paid within 15 minutes (left interval join), once the deadline passes
-- Also running: paid_orders (the interval join itself) and order_status (a regular-join
-- changelog), into blackhole sinks; SHOW JOBS in the shell shows their counts.

SET 'parallelism.default' = '2';

CREATE TABLE orders (
    order_id    BIGINT,
    customer_id BIGINT,
    product     STRING,
    amount      DOUBLE,
    order_time  TIMESTAMP(3),
    WATERMARK FOR order_time AS order_time - INTERVAL '5' SECOND
) WITH (
    'connector' = 'orders',
    'kind' = 'orders',
    'rows-per-second' = '50',
    'number-of-rows' = '1500',
    'event-time.step' = '2 s',
    'payment.max-delay' = '20 min',
    'seed' = '42'
);

CREATE TABLE payments (
    payment_id BIGINT,
    order_id   BIGINT,
    amount     DOUBLE,
    method     STRING,
    pay_time   TIMESTAMP(3),
    WATERMARK FOR pay_time AS pay_time - INTERVAL '5' SECOND
) WITH (
    'connector' = 'orders',
    'kind' = 'payments',
    'rows-per-second' = '50',
    'number-of-rows' = '1500',
    'event-time.step' = '2 s',
    'payment.max-delay' = '20 min',
    'seed' = '42'
);

CREATE VIEW order_payments AS
SELECT o.order_id, o.customer_id, o.product, o.amount, o.order_time,
       p.payment_id, p.method, p.pay_time
FROM orders o
JOIN payments p
  ON o.order_id = p.order_id
 AND p.pay_time BETWEEN o.order_time AND o.order_time + INTERVAL '15' MINUTE;

CREATE VIEW overdue_orders AS
SELECT o.order_id, o.customer_id, o.product, o.amount, o.order_time
FROM orders o
LEFT JOIN payments p
  ON o.order_id = p.order_id
 AND p.pay_time BETWEEN o.order_time AND o.order_time + INTERVAL '15' MINUTE
WHERE p.payment_id IS NULL;

CREATE TABLE paid_orders (
    order_id BIGINT, customer_id BIGINT, product STRING, amount DOUBLE, order_time TIMESTAMP(3),
    payment_id BIGINT, method STRING, pay_time TIMESTAMP(3)
) WITH ('connector' = 'blackhole');

CREATE TABLE unpaid_orders (
    order_id BIGINT, customer_id BIGINT, product STRING, amount DOUBLE, order_time TIMESTAMP(3)
) WITH ('connector' = 'print', 'print-identifier' = 'unpaid');

CREATE TABLE revenue_per_minute (
    window_start TIMESTAMP(3),
    window_end   TIMESTAMP(3),
    orders       BIGINT,
    revenue      DOUBLE,
    avg_amount   DOUBLE,
    max_amount   DOUBLE
) WITH ('connector' = 'print', 'print-identifier' = 'revenue');

CREATE TABLE order_status (
    order_id BIGINT, status STRING, PRIMARY KEY (order_id) NOT ENFORCED
) WITH ('connector' = 'blackhole');

SET 'pipeline.name' = 'paid_orders';
INSERT INTO paid_orders SELECT * FROM order_payments;

SET 'pipeline.name' = 'unpaid_orders';
INSERT INTO unpaid_orders SELECT * FROM overdue_orders;

SET 'pipeline.name' = 'revenue_per_minute';
INSERT INTO revenue_per_minute
SELECT window_start, window_end, count(*), round(sum(amount), 2), round(avg(amount), 2), max(amount)
FROM TABLE(TUMBLE(TABLE order_payments, DESCRIPTOR(pay_time), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end;

SET 'pipeline.name' = 'order_status';
INSERT INTO order_status
SELECT o.order_id,
       CASE WHEN p.payment_id IS NOT NULL THEN 'paid'
            WHEN u.order_id IS NOT NULL THEN 'overdue'
            ELSE 'created' END
FROM orders o
LEFT JOIN payments p ON o.order_id = p.order_id
LEFT JOIN overdue_orders u ON o.order_id = u.order_id;
