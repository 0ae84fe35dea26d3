-- weir's main demo: an order stream and its payment stream, generated
-- in-process (no external service), aggregated in 10-second event-time
-- windows and printed live as each window closes.
--
--   cargo run -- -f examples/sql/demo.sql
--
-- It runs for about 30 seconds (6000 orders at 200 per second); Ctrl-C stops it early.

CREATE TABLE orders (
    order_id    BIGINT,
    customer_id BIGINT,
    product     STRING,
    amount      DOUBLE,
    order_time  TIMESTAMP(3),
    WATERMARK FOR order_time AS order_time - INTERVAL '2' SECOND
) WITH (
    'connector' = 'orders',
    'kind' = 'orders',
    'rows-per-second' = '200',
    'number-of-rows' = '6000',
    'seed' = '42'
);

CREATE TABLE payments (
    payment_id BIGINT,
    order_id   BIGINT,
    amount     DOUBLE,
    method     STRING,
    pay_time   TIMESTAMP(3),
    WATERMARK FOR pay_time AS pay_time - INTERVAL '2' SECOND
) WITH (
    'connector' = 'orders',
    'kind' = 'payments',
    'rows-per-second' = '200',
    'number-of-rows' = '6000',
    'seed' = '42'
);

CREATE TABLE revenue_per_window (
    window_start TIMESTAMP(3),
    window_end   TIMESTAMP(3),
    product      STRING,
    orders       BIGINT,
    revenue      DOUBLE,
    avg_amount   DOUBLE,
    max_amount   DOUBLE
) WITH ('connector' = 'print', 'print-identifier' = 'revenue');

CREATE TABLE payments_per_window (
    window_start TIMESTAMP(3),
    window_end   TIMESTAMP(3),
    method       STRING,
    payments     BIGINT,
    paid         DOUBLE
) WITH ('connector' = 'print', 'print-identifier' = 'payments');

SET 'parallelism.default' = '2';

INSERT INTO revenue_per_window
SELECT window_start, window_end, product,
       count(*), round(sum(amount), 2), round(avg(amount), 2), max(amount)
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(order_time), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, product;

INSERT INTO payments_per_window
SELECT window_start, window_end, method, count(*), round(sum(amount), 2)
FROM TABLE(TUMBLE(TABLE payments, DESCRIPTOR(pay_time), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, method;
