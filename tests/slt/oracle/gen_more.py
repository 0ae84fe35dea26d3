from oracle import *
from gen_windows import ORDERS_DDL, CUST, PROD
from paths import SLT as OUT
R=rows()
MS=dt.timedelta(milliseconds=1)
s=Slt()
s.comment("""More window aggregate shapes: filters and expressions on window columns,
renamed window columns, FILTER clauses, UNION ALL inputs, CTEs, VALUES,
tables without a watermark, NULL and microsecond rowtimes.""")
s.ok(ORDERS_DDL)

s.comment("A filter on window_start before the aggregate.")
s.q("""SELECT window_start, count(*)
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
WHERE window_start >= TIMESTAMP '2024-01-01 10:03:00' AND customer IS NOT NULL
GROUP BY window_start, window_end""",
    window_agg([r for r in R if r['customer'] is not None and tumble(r['ts'], MIN)[0][0] >= dt.datetime(2024,1,1,10,3)], lambda r: tumble(r['ts'], MIN), [], [count_star], lambda s_, e, k, a: (s_, *a)), types='TI')

s.comment("Aggregates of window columns, and an expression of window_end in the select list.")
s.q("""SELECT window_start, max(window_end) AS e, min(window_time) AS wt, count(*), window_end - INTERVAL '1' SECOND
FROM TABLE(HOP(TABLE orders, DESCRIPTOR(ts), INTERVAL '2' MINUTE, INTERVAL '4' MINUTE))
GROUP BY window_start, window_end""",
    window_agg(R, lambda r: hop(r['ts'], 2*MIN, 4*MIN), [], [count_star], lambda s_, e, k, a: (s_, e, e - MS, *a, e - SEC)), types='TTTIT')

s.comment("Window columns renamed in a subquery still drive the window aggregate.")
s.q("""SELECT ws, who, count(*)
FROM (SELECT window_start AS ws, window_end AS we, customer AS who FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '2' MINUTE)))
GROUP BY ws, we, who""",
    window_agg(R, lambda r: tumble(r['ts'], 2*MIN), [CUST], [count_star], lambda s_, e, k, a: (s_, *k, *a)), types='TTI')

s.comment("FILTER clauses.")
s.q("""SELECT window_start, count(*) FILTER (WHERE product = 'apple') AS apples, sum(amount) FILTER (WHERE qty > 1) AS multi
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '2' MINUTE))
GROUP BY window_start, window_end""",
    window_agg(R, lambda r: tumble(r['ts'], 2*MIN), [], [lambda rs: sum(1 for r in rs if r['product'] == 'apple'), lambda rs: sum_('amount')([r for r in rs if r['qty'] is not None and r['qty'] > 1])],
               lambda s_, e, k, a: (s_, *a)), types='TIR')

s.comment("A window over a UNION ALL view (each order counted twice).")
s.ok("CREATE VIEW twice AS SELECT order_id, ts FROM orders UNION ALL SELECT order_id + 100, ts FROM orders")
s.q("""SELECT window_start, count(*), min(order_id), max(order_id)
FROM TABLE(TUMBLE(TABLE twice, DESCRIPTOR(ts), INTERVAL '2' MINUTE))
GROUP BY window_start, window_end""",
    window_agg(R + [dict(r, order_id=r['order_id'] + 100) for r in R], lambda r: tumble(r['ts'], 2*MIN), [], [count_star, min_('order_id'), max_('order_id')], lambda s_, e, k, a: (s_, *a)), types='TIII')

s.comment("The UNION ALL of two window aggregates.")
t1 = window_agg(R, lambda r: tumble(r['ts'], 3*MIN), [], [count_star], lambda s_, e, k, a: ('tumble', s_, e, *a))
h1 = window_agg(R, lambda r: hop(r['ts'], 3*MIN, 6*MIN), [], [count_star], lambda s_, e, k, a: ('hop', s_, e, *a))
s.q("""SELECT 'tumble', window_start, window_end, count(*) FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '3' MINUTE)) GROUP BY window_start, window_end
UNION ALL
SELECT 'hop', window_start, window_end, count(*) FROM TABLE(HOP(TABLE orders, DESCRIPTOR(ts), INTERVAL '3' MINUTE, INTERVAL '6' MINUTE)) GROUP BY window_start, window_end""",
    t1 + h1, types='TTTI')

s.comment("A window TVF over a CTE of the query.")
s.q("""WITH cheap AS (SELECT * FROM orders WHERE amount < 10)
SELECT window_start, count(*) FROM TABLE(TUMBLE(TABLE cheap, DESCRIPTOR(ts), INTERVAL '2' MINUTE)) GROUP BY window_start, window_end""",
    window_agg([r for r in R if r['amount'] is not None and r['amount'] < 10], lambda r: tumble(r['ts'], 2*MIN), [], [count_star], lambda s_, e, k, a: (s_, *a)), types='TI')

s.comment("""A table without a WATERMARK: its windows fire when the bounded input ends.""")
s.ok("""CREATE TABLE orders_nowm (order_id BIGINT, customer STRING, ts TIMESTAMP(3))
WITH ('connector' = 'filesystem', 'path' = '__DATA__/orders', 'format' = 'json')""")
s.q("""SELECT window_start, customer, count(*)
FROM TABLE(TUMBLE(TABLE orders_nowm, DESCRIPTOR(ts), INTERVAL '2' MINUTE))
GROUP BY window_start, window_end, customer""",
    window_agg(R, lambda r: tumble(r['ts'], 2*MIN), [CUST], [count_star], lambda s_, e, k, a: (s_, *k, *a)), types='TTI')

s.comment("Windows over VALUES (through a view).")
V = [(dt.datetime(2024,1,1,0,0,1), 'x', 1), (dt.datetime(2024,1,1,0,0,59), 'y', 2), (dt.datetime(2024,1,1,0,1,0), 'x', 3), (dt.datetime(2024,1,1,0,2,30), 'x', 4)]
s.ok("""CREATE VIEW v AS SELECT * FROM (VALUES
  (TIMESTAMP '2024-01-01 00:00:01', 'x', 1),
  (TIMESTAMP '2024-01-01 00:00:59', 'y', 2),
  (TIMESTAMP '2024-01-01 00:01:00', 'x', 3),
  (TIMESTAMP '2024-01-01 00:02:30', 'x', 4)) AS t(ts, k, n)""")
s.q("""SELECT window_start, window_end, k, count(*), sum(n)
FROM TABLE(TUMBLE(TABLE v, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, k""",
    window_agg([dict(ts=a, k=b, n=c) for a, b, c in V], lambda r: tumble(r['ts'], MIN), [lambda r: r['k']], [count_star, sum_('n')], lambda s_, e, k, a: (s_, e, *k, *a)), types='TTTII')

s.comment("""Rows with a NULL rowtime belong to no window (they are skipped and counted as
skipped records); microsecond rowtimes give microsecond windows.""")
s.ok("""CREATE TABLE micros (id BIGINT, ts TIMESTAMP(6), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
WITH ('connector' = 'filesystem', 'path' = '__DATA__/misc/null_ts.json', 'format' = 'json')""")
s.q("SELECT id, ts FROM micros", [(1, '2024-01-01 10:00:01.500'), (2, 'NULL'), (3, '2024-01-01 10:00:59.999'), (4, 'NULL'), (5, '2024-01-01 10:01:00.000'), (6, '2024-01-01 10:03:30.250')], types='IT')
s.q("SELECT id, CAST(ts AS STRING) FROM micros WHERE id IN (3, 5)", [(3, '2024-01-01T10:00:59.999999'), (5, '2024-01-01T10:01:00.000001')], types='IT')
s.q("""SELECT window_start, window_end, count(*), min(id)
FROM TABLE(TUMBLE(TABLE micros, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end""",
    [('2024-01-01 10:00:00.000', '2024-01-01 10:01:00.000', 2, 1), ('2024-01-01 10:01:00.000', '2024-01-01 10:02:00.000', 1, 5), ('2024-01-01 10:03:00.000', '2024-01-01 10:04:00.000', 1, 6)], types='TTII')
s.q("""SELECT CAST(window_time AS STRING), count(*)
FROM TABLE(TUMBLE(TABLE micros, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, window_time""",
    [('2024-01-01T10:00:59.999999', 2), ('2024-01-01T10:01:59.999999', 1), ('2024-01-01T10:03:59.999999', 1)], types='TI')
s.q("""SELECT window_start, count(*)
FROM TABLE(TUMBLE(TABLE micros, DESCRIPTOR(ts), INTERVAL '0.5' SECOND))
GROUP BY window_start, window_end""",
    [('2024-01-01 10:00:01.500', 1), ('2024-01-01 10:00:59.500', 1), ('2024-01-01 10:01:00.000', 1), ('2024-01-01 10:03:30.000', 1)], types='TI')

s.comment("A TIMESTAMP(0) rowtime cannot have sub-second windows.")
s.ok("""CREATE TABLE seconds (id BIGINT, ts TIMESTAMP(0), WATERMARK FOR ts AS ts)
WITH ('connector' = 'filesystem', 'path' = '__DATA__/misc/null_ts.json', 'format' = 'json')""")
s.err("SELECT window_start, count(*) FROM TABLE(TUMBLE(TABLE seconds, DESCRIPTOR(ts), INTERVAL '0.5' SECOND)) GROUP BY window_start, window_end",
      r"^Invalid statement: TUMBLE: durations below a second need a TIMESTAMP with sub-second precision")

s.comment("A view of a window TVF (no aggregate), aggregated by its window columns.")
s.ok("CREATE VIEW hopped AS SELECT * FROM TABLE(HOP(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '2' MINUTE))")
s.q("SELECT window_start, window_end, count(*), sum(qty) FROM hopped GROUP BY window_start, window_end",
    window_agg(R, lambda r: hop(r['ts'], MIN, 2*MIN), [], [count_star, sum_('qty')], lambda s_, e, k, a: (s_, e, *a)), types='TTII')
s.q("SELECT order_id, window_start FROM hopped WHERE customer = 'dave'",
    [(r['order_id'], w[0]) for r in R for w in hop(r['ts'], MIN, 2*MIN) if r['customer'] == 'dave'], types='IT')

s.comment("A negative offset.")
s.q("""SELECT window_start, window_end, count(*)
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '-15' SECOND))
GROUP BY window_start, window_end""",
    window_agg(R, lambda r: tumble(r['ts'], MIN, -15*SEC), [], [count_star], lambda s_, e, k, a: (s_, e, *a)), types='TTI')

s.comment("Times before 1970.")
s.ok("""CREATE VIEW old AS SELECT * FROM (VALUES
  (TIMESTAMP '1969-12-31 23:59:30', 1), (TIMESTAMP '1969-12-31 23:58:59.999', 2), (TIMESTAMP '1970-01-01 00:00:10', 3)) AS t(ts, x)""")
s.q("SELECT window_start, window_end, sum(x) FROM TABLE(TUMBLE(TABLE old, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end",
    [('1969-12-31 23:58:00.000', '1969-12-31 23:59:00.000', 2), ('1969-12-31 23:59:00.000', '1970-01-01 00:00:00.000', 1), ('1970-01-01 00:00:00.000', '1970-01-01 00:01:00.000', 3)], types='TTI')

s.comment("Other DataFusion aggregates in a window: median, bool_and, bit_or.")
def median(col):
    def f(rs):
        v = sorted(nn(col, rs))
        if not v: return None
        n = len(v)
        return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
    return f
s.q("""SELECT window_start, median(amount), bool_and(qty > 0), bit_or(qty)
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '3' MINUTE))
GROUP BY window_start, window_end""",
    window_agg(R, lambda r: tumble(r['ts'], 3*MIN), [], [median('amount'), lambda rs: all(r['qty'] > 0 for r in rs if r['qty'] is not None), lambda rs: __import__('functools').reduce(lambda a, b: a | b, nn('qty', rs), 0)],
               lambda s_, e, k, a: (s_, *a)), types='TRTI')

s.comment("A window aggregate whose input is empty gives no rows.")
s.q("""SELECT window_start, count(*)
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
WHERE order_id < 0
GROUP BY window_start, window_end""", [], types='TI')
s.write(f'{OUT}/windows_more.slt')
