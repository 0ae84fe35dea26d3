from oracle import *
from paths import SLT as OUT
R = rows()
ORDERS_DDL = """CREATE TABLE orders (
  order_id BIGINT,
  customer STRING,
  product STRING,
  amount DOUBLE,
  qty INT,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = '__DATA__/orders', 'format' = 'json')"""
CUST = lambda r: r['customer']
PROD = lambda r: r['product']

def header(title):
    s = Slt()
    s.comment(title + """

Data: tests/data/orders/part-{0,1,2}.json, 24 orders between 10:00:05 and 10:07:01
on 2024-01-01, split by time over three files (so that at parallelism 4 three
source subtasks read them), out of order by up to 40 s within a file, with
NULL customers, amounts and quantities. No row is late: a file's rows are all
later than the previous file's watermark. Expected results were computed
independently of weir (a Python model of the window semantics).""")
    s.ok(ORDERS_DDL)
    return s

# ---------------------------------------------------------------- TUMBLE
s = header("TUMBLE window aggregates and the TUMBLE table function.")
s.comment("Global 1-minute windows: count, sum, min, max, avg. A NULL amount is ignored by\nsum/min/max/avg but counted by count(*).")
s.q("""SELECT window_start, window_end, count(*) AS cnt, count(amount) AS cnt_amount, sum(amount) AS total,
       min(amount) AS lo, max(amount) AS hi, avg(amount) AS mean
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end""",
    window_agg(R, lambda r: tumble(r['ts'], MIN), [], [count_star, count('amount'), sum_('amount'), min_('amount'), max_('amount'), avg('amount')],
               lambda s_, e, k, a: (s_, e, *a)), types='TTIIRRRR')

s.comment("Per customer (NULL is a key of its own), with an integer sum, count(DISTINCT) and approx_distinct.")
s.q("""SELECT window_start, window_end, customer, count(*), sum(qty), count(DISTINCT product), approx_distinct(product)
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, customer""",
    window_agg(R, lambda r: tumble(r['ts'], MIN), [CUST], [count_star, sum_('qty'), count_distinct('product'), count_distinct('product')],
               lambda s_, e, k, a: (s_, e, *k, *a)), types='TTTIIII')

s.comment("Group keys before the window columns, two keys, and an alias on the TVF.")
s.q("""SELECT o.product, o.customer, o.window_start, max(o.qty) AS max_qty
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '2' MINUTE)) AS o
GROUP BY o.product, o.customer, o.window_start, o.window_end""",
    window_agg(R, lambda r: tumble(r['ts'], 2*MIN), [PROD, CUST], [max_('qty')],
               lambda s_, e, k, a: (*k, s_, *a)), types='TTTI')

s.comment("window_time (window_end - 1 ms) as a group column.")
s.q("""SELECT window_start, window_end, window_time, count(*)
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, window_time""",
    window_agg(R, lambda r: tumble(r['ts'], MIN), [], [count_star],
               lambda s_, e, k, a: (s_, e, e - dt.timedelta(milliseconds=1), *a)), types='TTTI')

s.comment("Windows with an offset: 2-minute windows starting at :30.")
s.q("""SELECT window_start, window_end, count(*), sum(amount)
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '2' MINUTE, INTERVAL '30' SECOND))
GROUP BY window_start, window_end""",
    window_agg(R, lambda r: tumble(r['ts'], 2*MIN, 30*SEC), [], [count_star, sum_('amount')],
               lambda s_, e, k, a: (s_, e, *a)), types='TTIR')

s.comment("The named-argument form (any order), and Flink's plural interval unit.")
s.q("""SELECT window_start, window_end, count(*)
FROM TABLE(TUMBLE(TIMECOL => DESCRIPTOR(ts), DATA => TABLE orders, SIZE => INTERVAL '1' MINUTES))
GROUP BY window_start, window_end""",
    window_agg(R, lambda r: tumble(r['ts'], MIN), [], [count_star], lambda s_, e, k, a: (s_, e, *a)), types='TTI')

s.q("""SELECT window_start, window_end, count(*)
FROM TABLE(TUMBLE(DATA => TABLE orders, TIMECOL => DESCRIPTOR(ts), SIZE => INTERVAL '2' MINUTE, OFFSET => INTERVAL '30' SECOND))
GROUP BY window_start, window_end""",
    window_agg(R, lambda r: tumble(r['ts'], 2*MIN, 30*SEC), [], [count_star], lambda s_, e, k, a: (s_, e, *a)), types='TTI')

s.comment("Seconds-sized windows.")
s.q("""SELECT window_start, count(*)
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '30' SECOND))
GROUP BY window_start, window_end""",
    window_agg(R, lambda r: tumble(r['ts'], 30*SEC), [], [count_star], lambda s_, e, k, a: (s_, *a)), types='TI')

s.comment("A filter before the aggregate, expressions over aggregates, HAVING, a key expression.")
flt = [r for r in R if r['product'] != 'banana']
res = window_agg(flt, lambda r: tumble(r['ts'], 2*MIN), [lambda r: r['customer'].upper() if r['customer'] else None],
                 [count_star, sum_('amount')], lambda s_, e, k, a: (s_, *k, a[0], a[1] * 2 if a[1] is not None else None, a[0]))
s.q("""SELECT window_start, upper(customer) AS who, count(*) AS n, sum(amount) * 2 AS twice, count(*) + 0 AS n2
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '2' MINUTE))
WHERE product <> 'banana'
GROUP BY window_start, window_end, upper(customer)
HAVING count(*) >= 2""", [r for r in res if r[2] >= 2], types='TTIRI')

s.comment("A window aggregate over a view.")
s.ok("CREATE VIEW big_orders AS SELECT order_id, customer, amount, ts FROM orders WHERE amount >= 10")
s.q("""SELECT window_start, customer, count(*), sum(amount)
FROM TABLE(TUMBLE(TABLE big_orders, DESCRIPTOR(ts), INTERVAL '2' MINUTE))
GROUP BY window_start, window_end, customer""",
    window_agg([r for r in R if r['amount'] is not None and r['amount'] >= 10], lambda r: tumble(r['ts'], 2*MIN), [CUST], [count_star, sum_('amount')],
               lambda s_, e, k, a: (s_, *k, *a)), types='TTIR')

s.comment("""The bounded source ends the job with a final +inf watermark, which fires every
window, even one that ends long after the last row (all 24 rows in one hour).""")
s.q("""SELECT window_start, window_end, count(*), sum(qty)
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' HOUR))
GROUP BY window_start, window_end""",
    window_agg(R, lambda r: tumble(r['ts'], dt.timedelta(hours=1)), [], [count_star, sum_('qty')], lambda s_, e, k, a: (s_, e, *a)), types='TTII')

s.q("""SELECT window_start, window_end, count(*)
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' DAY))
GROUP BY window_start, window_end""",
    window_agg(R, lambda r: tumble(r['ts'], dt.timedelta(days=1)), [], [count_star], lambda s_, e, k, a: (s_, e, *a)), types='TTI')

s.comment("The same windows over the CSV copy of the data (one file, with a header line).")
s.ok("""CREATE TABLE orders_csv (
  order_id BIGINT,
  customer STRING,
  product STRING,
  amount DOUBLE,
  qty INT,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH ('connector' = 'filesystem', 'path' = '__DATA__/orders.csv', 'format' = 'csv', 'csv.header' = 'true')""")
s.q("""SELECT window_start, window_end, customer, count(*), sum(amount), max(qty)
FROM TABLE(TUMBLE(TABLE orders_csv, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, customer""",
    window_agg(R, lambda r: tumble(r['ts'], MIN), [CUST], [count_star, sum_('amount'), max_('qty')],
               lambda s_, e, k, a: (s_, e, *k, *a)), types='TTTIRI')

s.comment("The TUMBLE table function without aggregation: every row with its window.")
s.q("""SELECT order_id, customer, window_start, window_end, window_time
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))""",
    [(r['order_id'], r['customer'], w[0], w[1], w[1] - dt.timedelta(milliseconds=1)) for r in R for w in tumble(r['ts'], MIN)], types='ITTTT')

s.q("""SELECT *
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '90' SECOND))
WHERE window_start >= TIMESTAMP '2024-01-01 10:06:00'""",
    [(r['order_id'], r['customer'], r['product'], r['amount'], r['qty'], r['ts'], w[0], w[1], w[1] - dt.timedelta(milliseconds=1))
     for r in R for w in tumble(r['ts'], 90*SEC) if w[0] >= dt.datetime(2024,1,1,10,6)], types='ITTRITTTT')
s.write(f'{OUT}/tumble.slt')

# ---------------------------------------------------------------- HOP
s = header("HOP (sliding) window aggregates and the HOP table function.")
s.comment("2-minute windows every minute: each row is in two windows.")
s.q("""SELECT window_start, window_end, count(*), sum(amount), avg(qty)
FROM TABLE(HOP(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '2' MINUTE))
GROUP BY window_start, window_end""",
    window_agg(R, lambda r: hop(r['ts'], MIN, 2*MIN), [], [count_star, sum_('amount'), avg('qty')], lambda s_, e, k, a: (s_, e, *a)), types='TTIRR')

s.comment("Per product, with count(DISTINCT) and min/max of a timestamp.")
s.q("""SELECT window_start, window_end, product, count(DISTINCT customer), min(ts), max(ts)
FROM TABLE(HOP(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '3' MINUTE))
GROUP BY window_start, window_end, product""",
    window_agg(R, lambda r: hop(r['ts'], MIN, 3*MIN), [PROD], [count_distinct('customer'), min_('ts'), max_('ts')], lambda s_, e, k, a: (s_, e, *k, *a)), types='TTTITT')

s.comment("Named arguments, seconds, a slide that does not divide the minute evenly in windows.")
s.q("""SELECT window_start, window_end, customer, count(*)
FROM TABLE(HOP(DATA => TABLE orders, TIMECOL => DESCRIPTOR(ts), SLIDE => INTERVAL '30' SECOND, SIZE => INTERVAL '90' SECOND))
GROUP BY window_start, window_end, customer""",
    window_agg(R, lambda r: hop(r['ts'], 30*SEC, 90*SEC), [CUST], [count_star], lambda s_, e, k, a: (s_, e, *k, *a)), types='TTTI')

s.comment("An offset.")
s.q("""SELECT window_start, window_end, count(*), max(amount)
FROM TABLE(HOP(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '2' MINUTE, INTERVAL '15' SECOND))
GROUP BY window_start, window_end""",
    window_agg(R, lambda r: hop(r['ts'], MIN, 2*MIN, 15*SEC), [], [count_star, max_('amount')], lambda s_, e, k, a: (s_, e, *a)), types='TTIR')

s.comment("The HOP table function without aggregation explodes each row into its windows.")
s.q("""SELECT order_id, window_start, window_end
FROM TABLE(HOP(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '2' MINUTE))
WHERE order_id <= 6""",
    [(r['order_id'], w[0], w[1]) for r in R for w in hop(r['ts'], MIN, 2*MIN) if r['order_id'] <= 6], types='ITT')

s.write(f'{OUT}/hop.slt')

# ---------------------------------------------------------------- CUMULATE
s = header("CUMULATE window aggregates and the CUMULATE table function.")
s.comment("Windows growing by one minute up to three: [10:00, 10:01), [10:00, 10:02), [10:00, 10:03), [10:03, 10:04)...")
s.q("""SELECT window_start, window_end, count(*), sum(amount), min(amount), max(qty)
FROM TABLE(CUMULATE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '3' MINUTE))
GROUP BY window_start, window_end""",
    window_agg(R, lambda r: cumulate(r['ts'], MIN, 3*MIN), [], [count_star, sum_('amount'), min_('amount'), max_('qty')], lambda s_, e, k, a: (s_, e, *a)), types='TTIRRI')

s.comment("Per customer, with avg and count(DISTINCT).")
s.q("""SELECT window_start, window_end, customer, count(*), avg(amount), count(DISTINCT product)
FROM TABLE(CUMULATE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '4' MINUTE))
GROUP BY window_start, window_end, customer""",
    window_agg(R, lambda r: cumulate(r['ts'], MIN, 4*MIN), [CUST], [count_star, avg('amount'), count_distinct('product')], lambda s_, e, k, a: (s_, e, *k, *a)), types='TTTIRI')

s.comment("Named arguments and an offset.")
s.q("""SELECT window_start, window_end, count(*)
FROM TABLE(CUMULATE(DATA => TABLE orders, TIMECOL => DESCRIPTOR(ts), STEP => INTERVAL '30' SECOND, SIZE => INTERVAL '2' MINUTE, OFFSET => INTERVAL '1' MINUTE))
GROUP BY window_start, window_end""",
    window_agg(R, lambda r: cumulate(r['ts'], 30*SEC, 2*MIN, MIN), [], [count_star], lambda s_, e, k, a: (s_, e, *a)), types='TTI')

s.comment("The CUMULATE table function without aggregation.")
s.q("""SELECT order_id, window_start, window_end
FROM TABLE(CUMULATE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '3' MINUTE))
WHERE customer = 'dave' OR order_id = 1""",
    [(r['order_id'], w[0], w[1]) for r in R for w in cumulate(r['ts'], MIN, 3*MIN) if r['customer'] == 'dave' or r['order_id'] == 1], types='ITT')
s.write(f'{OUT}/cumulate.slt')

# ---------------------------------------------------------------- SESSION
s = header("SESSION window aggregates.")
s.comment("Sessions per customer with a 1-minute gap: window [first row, last row + gap).")
def sess_rows(gap, key, aggs, shape):
    return [shape(st, en, k, [a(rs) for a in aggs]) for (k, st, en, rs) in sessions(R, gap, key)]
s.q("""SELECT window_start, window_end, customer, count(*), sum(amount), max(qty)
FROM TABLE(SESSION(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, customer""",
    sess_rows(MIN, CUST, [count_star, sum_('amount'), max_('qty')], lambda st, en, k, a: (st, en, k, *a)), types='TTTIRI')

s.comment("Flink's PARTITION BY form gives the same sessions.")
s.q("""SELECT customer, window_start, window_end, count(*), count(DISTINCT product)
FROM TABLE(SESSION(TABLE orders PARTITION BY customer, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY customer, window_start, window_end""",
    sess_rows(MIN, CUST, [count_star, count_distinct('product')], lambda st, en, k, a: (k, st, en, *a)), types='TTTII')

s.comment("Without a key: sessions over all rows.")
s.q("""SELECT window_start, window_end, count(*), avg(amount)
FROM TABLE(SESSION(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end""",
    sess_rows(MIN, lambda r: None, [count_star, avg('amount')], lambda st, en, k, a: (st, en, *a)), types='TTIR')

s.comment("A shorter gap, keyed by product, with window_time.")
s.q("""SELECT product, window_start, window_time, count(*)
FROM TABLE(SESSION(TABLE orders, DESCRIPTOR(ts), INTERVAL '40' SECOND))
GROUP BY product, window_start, window_end, window_time""",
    sess_rows(40*SEC, PROD, [count_star], lambda st, en, k, a: (k, st, en - dt.timedelta(milliseconds=1), *a)), types='TTTI')
s.comment("""Rows exactly one gap apart: weir documents sessions as rows *less* than the
gap apart, so they are two sessions. (Flink merges windows that touch, so it
would give one session [00:00, 00:02) here; see the test report.)""")
s.ok("""CREATE VIEW touching AS SELECT * FROM (VALUES
  (TIMESTAMP '2024-01-01 00:00:00', 'a'), (TIMESTAMP '2024-01-01 00:01:00', 'a'),
  (TIMESTAMP '2024-01-01 00:01:59.999', 'b'), (TIMESTAMP '2024-01-01 00:02:59.998', 'b')) AS t(ts, k)""")
s.q("""SELECT k, window_start, window_end, count(*)
FROM TABLE(SESSION(TABLE touching PARTITION BY k, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY k, window_start, window_end""",
    [('a', '2024-01-01 00:00:00.000', '2024-01-01 00:01:00.000', 1), ('a', '2024-01-01 00:01:00.000', '2024-01-01 00:02:00.000', 1),
     ('b', '2024-01-01 00:01:59.999', '2024-01-01 00:03:59.998', 2)], types='TTTI')
s.write(f'{OUT}/session.slt')

# ---------------------------------------------------------------- CASCADE
s = header("Cascaded window aggregation: window aggregates over window aggregates.")
per_cust = window_agg(R, lambda r: tumble(r['ts'], MIN), [CUST], [count_star, sum_('amount')],
                      lambda s_, e, k, a: dict(window_start=s_, window_end=e, customer=k[0], cnt=a[0], total=a[1], ts=e - dt.timedelta(milliseconds=1)))
s.ok("""CREATE VIEW per_customer AS
SELECT window_start, window_end, window_time, customer, count(*) AS cnt, sum(amount) AS total
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, window_time, customer""")
s.comment("The view itself.")
s.q("SELECT window_start, customer, cnt, total FROM per_customer",
    [(p['window_start'], p['customer'], p['cnt'], p['total']) for p in per_cust], types='TTIR')
s.comment("The same windows, grouped again by window_start, window_end.")
def agg_over(rows, keyf, aggs):
    g = {}
    for r in rows: g.setdefault(keyf(r), []).append(r)
    return [(*k, *[a(rs) for a in aggs]) for k, rs in g.items()]
s.q("""SELECT window_start, window_end, count(*) AS customers, sum(cnt) AS orders, max(total) AS best
FROM per_customer
GROUP BY window_start, window_end""",
    agg_over(per_cust, lambda p: (p['window_start'], p['window_end']), [count_star, sum_('cnt'), max_('total')]), types='TTIIR')
s.comment("The same over a subquery, with a filter between the two aggregates.")
s.q("""SELECT window_start, window_end, count(*) AS busy_customers
FROM (
  SELECT window_start, window_end, customer, count(*) AS cnt
  FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
  GROUP BY window_start, window_end, customer
) WHERE cnt >= 2
GROUP BY window_start, window_end""",
    agg_over([p for p in per_cust if p['cnt'] >= 2], lambda p: (p['window_start'], p['window_end']), [count_star]), types='TTI')
s.comment("""Rolling 1-minute results up into 2-minute windows, with a TUMBLE over the
first aggregate's window_time (Flink's cascading window aggregation; the first
aggregate's window columns are renamed, as a TVF adds its own).""")
s.ok("""CREATE VIEW per_customer_rt AS
SELECT window_start AS w1_start, window_end AS w1_end, window_time AS rowtime, customer, count(*) AS cnt
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, window_time, customer""")
s.q("""SELECT window_start, window_end, sum(cnt) AS orders, count(DISTINCT customer) AS customers, min(w1_start), max(rowtime)
FROM TABLE(TUMBLE(TABLE per_customer_rt, DESCRIPTOR(rowtime), INTERVAL '2' MINUTE))
GROUP BY window_start, window_end""",
    window_agg(per_cust, lambda p: tumble(p['ts'], 2*MIN), [], [sum_('cnt'), count_distinct('customer'), min_('window_start'), max_('ts')], lambda s_, e, k, a: (s_, e, *a)), types='TTIITT')
s.comment("A HOP over the first aggregate's rows.")
s.q("""SELECT window_start, window_end, sum(cnt) AS orders
FROM TABLE(HOP(TABLE per_customer_rt, DESCRIPTOR(rowtime), INTERVAL '1' MINUTE, INTERVAL '3' MINUTE))
GROUP BY window_start, window_end""",
    window_agg(per_cust, lambda p: hop(p['ts'], MIN, 3*MIN), [], [sum_('cnt')], lambda s_, e, k, a: (s_, e, *a)), types='TTI')
s.write(f'{OUT}/cascade.slt')
