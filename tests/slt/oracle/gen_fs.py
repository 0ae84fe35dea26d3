from oracle import *
from gen_windows import ORDERS_DDL
from paths import SLT as OUT
R=rows()
s=Slt()
s.comment("""The filesystem connector as a sink and a source: INSERT INTO writes part
files (committed when the bounded job ends), a table over the same directory
reads them back. Sink directories are under __TMP__ (fresh for each run).""")
s.ok(ORDERS_DDL)

s.comment("A window aggregate into JSON files, read back.")
s.ok("""CREATE TABLE per_minute (customer STRING, window_start TIMESTAMP(3), cnt BIGINT, total DOUBLE)
WITH ('connector' = 'filesystem', 'path' = '__TMP__/per_minute', 'format' = 'json')""")
s.ok("""INSERT INTO per_minute
SELECT customer, window_start, count(*), sum(amount)
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, customer""")
pm = window_agg(R, lambda r: tumble(r['ts'], MIN), [lambda r: r['customer']], [count_star, sum_('amount')], lambda s_, e, k, a: (k[0], s_, *a))
s.q("SELECT * FROM per_minute", pm, types='TTIR')

s.comment("The written timestamps are event times again: a window aggregate over the files.")
s.ok("""CREATE TABLE per_minute_in (customer STRING, window_start TIMESTAMP(3), cnt BIGINT, total DOUBLE,
  WATERMARK FOR window_start AS window_start)
WITH ('connector' = 'filesystem', 'path' = '__TMP__/per_minute', 'format' = 'json')""")
s.ok("CREATE VIEW per_minute_v AS SELECT customer, window_start AS minute, cnt FROM per_minute_in")
s.q("""SELECT window_start, sum(cnt), count(customer)
FROM TABLE(TUMBLE(TABLE per_minute_v, DESCRIPTOR(minute), INTERVAL '2' MINUTE))
GROUP BY window_start, window_end""",
    window_agg([dict(customer=c, ts=w, cnt=n) for (c, w, n, t_) in pm], lambda r: tumble(r['ts'], 2*MIN), [], [sum_('cnt'), count('customer')], lambda s_, e, k, a: (s_, *a)), types='TII')

s.comment("Rows with NULLs into CSV files with a header and another delimiter, read back.")
s.ok("""CREATE TABLE orders_csv (order_id BIGINT, customer STRING, amount DOUBLE, qty INT, ts TIMESTAMP(3))
WITH ('connector' = 'filesystem', 'path' = '__TMP__/orders_csv', 'format' = 'csv', 'csv.header' = 'true', 'csv.field-delimiter' = ';')""")
s.ok("INSERT INTO orders_csv SELECT order_id, customer, amount, qty, ts FROM orders WHERE customer IS NULL OR amount IS NULL OR qty IS NULL OR order_id = 1")
sel = [r for r in R if r['customer'] is None or r['amount'] is None or r['qty'] is None or r['order_id'] == 1]
s.q("SELECT * FROM orders_csv", [(r['order_id'], r['customer'], r['amount'], r['qty'], r['ts']) for r in sel], types='ITRIT')

s.comment("A second INSERT appends new part files.")
s.ok("INSERT INTO orders_csv SELECT order_id, customer, amount, qty, ts FROM orders WHERE order_id IN (2, 3)")
sel2 = sel + [r for r in R if r['order_id'] in (2, 3)]
s.q("SELECT order_id, customer FROM orders_csv", [(r['order_id'], r['customer']) for r in sel2], types='IT')

s.comment("An INSERT with a column list (in another order, one column left NULL), from VALUES.")
s.ok("""CREATE TABLE pairs (a BIGINT, b STRING, c DOUBLE) WITH ('connector' = 'filesystem', 'path' = '__TMP__/pairs', 'format' = 'json')""")
s.ok("INSERT INTO pairs (b, a) VALUES ('x', 1), ('y', 2)")
s.ok("INSERT INTO pairs SELECT order_id, product, amount FROM orders WHERE order_id > 22")
s.q("SELECT * FROM pairs", [(1, 'x', None), (2, 'y', None)] + [(r['order_id'], r['product'], r['amount']) for r in R if r['order_id'] > 22], types='ITR')

s.comment("A tiny rolling size makes many part files; all are read back.")
s.ok("""CREATE TABLE rolled (order_id BIGINT, product STRING)
WITH ('connector' = 'filesystem', 'path' = '__TMP__/rolled', 'format' = 'json', 'sink.rolling-policy.file-size' = '1b')""")
s.ok("INSERT INTO rolled SELECT order_id, product FROM orders")
s.q("SELECT product, order_id FROM rolled WHERE order_id > 20", [(r['product'], r['order_id']) for r in R if r['order_id'] > 20], types='TI')
s.q("""-- weir: final state
SELECT count(*), count(DISTINCT order_id), sum(order_id) FROM rolled""", [(24, 24, sum(range(1, 25)))], types='III')

s.comment("ISO-8601 timestamps in JSON, both ways.")
s.ok("""CREATE TABLE iso (order_id BIGINT, ts TIMESTAMP(3))
WITH ('connector' = 'filesystem', 'path' = '__TMP__/iso', 'format' = 'json', 'json.timestamp-format.standard' = 'ISO-8601')""")
s.ok("INSERT INTO iso SELECT order_id, ts FROM orders WHERE order_id IN (1, 10)")
s.q("SELECT * FROM iso", [(r['order_id'], r['ts']) for r in R if r['order_id'] in (1, 10)], types='IT')

s.comment("""Malformed JSON lines (line 3 is truncated, line 5 has a string id) fail the job
(errors.slt), or are skipped with 'json.ignore-parse-errors'.""")
s.ok("""CREATE TABLE lenient (id BIGINT, ts TIMESTAMP(3))
WITH ('connector' = 'filesystem', 'path' = '__DATA__/bad', 'format' = 'json', 'json.ignore-parse-errors' = 'true')""")
s.q("SELECT id, ts FROM lenient", [(i, dt.datetime(2024,1,1,0,0,i)) for i in (1, 2, 4, 6)], types='IT')

s.comment("A view over the output files.")
s.ok("CREATE VIEW big_minutes AS SELECT customer, cnt FROM per_minute WHERE cnt >= 2")
s.q("SELECT * FROM big_minutes", [(c, n) for (c, w, n, t_) in pm if n >= 2], types='TI')
s.comment("""DECIMAL, DATE and BOOLEAN columns through CSV, JSON and Parquet files.""")
s.ok("""CREATE TABLE od (order_id BIGINT, amount DECIMAL(10, 2), ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH ('connector' = 'filesystem', 'path' = '__DATA__/orders', 'format' = 'json')""")
from decimal import Decimal
dec = window_agg([dict(r, amount=None if r['amount'] is None else Decimal(repr(r['amount']))) for r in R], lambda r: tumble(r['ts'], 2*MIN), [], [sum_('amount')],
                 lambda s_, e, k, a: (s_, '%.2f' % a[0], s_.date().isoformat(), a[0] > 50))
for fmt_name in ('csv', 'json', 'parquet'):
    s.ok(f"""CREATE TABLE typed_{fmt_name} (w TIMESTAMP(3), total DECIMAL(12, 2), d DATE, flag BOOLEAN)
WITH ('connector' = 'filesystem', 'path' = '__TMP__/typed_{fmt_name}', 'format' = '{fmt_name}')""")
s.ok("""INSERT INTO typed_csv
SELECT window_start, sum(amount), CAST(window_start AS DATE) AS d, sum(amount) > 50
FROM TABLE(TUMBLE(TABLE od, DESCRIPTOR(ts), INTERVAL '2' MINUTE))
GROUP BY window_start, window_end""")
s.ok("INSERT INTO typed_json SELECT * FROM typed_csv")
s.ok("INSERT INTO typed_parquet SELECT * FROM typed_json")
for fmt_name in ('csv', 'json', 'parquet'):
    s.q(f"SELECT * FROM typed_{fmt_name}", dec, types='TRTT')
s.write(f'{OUT}/filesystem.slt')
