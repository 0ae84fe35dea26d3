from oracle import *
from paths import SLT as OUT
from gen_windows import ORDERS_DDL  # regenerates window files too (harmless)

def parts_rows():
    return [[dict(order_id=o, customer=c, product=p, amount=a, qty=q, ts=t(s_)) for (o,c,p,a,q,s_) in part] for part in PARTS]

class UpdAgg:
    """Model of weir's UpdatingAggregate: per input batch, per touched group in
    first-touch order, apply adds and retracts, then emit +I / -U,+U / -D."""
    def __init__(self, keyf, aggs):
        self.keyf, self.aggs = keyf, aggs
        self.groups = {}   # key -> dict(rows=list, emitted=None)
    def batch(self, changes):
        """changes: list of (op, row). returns list of (op, key, values)."""
        touched = []
        per = {}
        for op, r in changes:
            k = self.keyf(r)
            if k not in per:
                per[k] = ([], []); touched.append(k)
            (per[k][1] if op in ('-U', '-D') else per[k][0]).append(r)
        out = []
        for k in touched:
            g = self.groups.setdefault(k, dict(rows=[], emitted=None))
            adds, subs = per[k]
            g['rows'].extend(adds)
            for r in subs:
                g['rows'].remove(r)
            new = tuple(a(g['rows']) for a in self.aggs) if g['rows'] else None
            old = g['emitted']
            if old is None and new is not None:
                out.append(('+I', k, new))
            elif old is not None and new is not None:
                if old != new:
                    out.append(('-U', k, old)); out.append(('+U', k, new))
            elif old is not None and new is None:
                out.append(('-D', k, old))
            g['emitted'] = new
        return out

def flat(op, k, v):
    k = k if isinstance(k, tuple) else (k,)
    return (op, *k, *v)

s = Slt()
s.raw("""# weir: parallelism 1 only
#
# Non-windowed GROUP BY: an updating result, as a changelog. At parallelism 1
# the changelog is deterministic: the source reads tests/data/orders/part-0,1,2
# one file (one batch) after the other, and the aggregate emits, per batch and
# per changed group (in order of first appearance in the batch), +I for a new
# group, -U/+U for a changed one and -D for a group left without rows.
# (changelog_final.slt checks the final results at parallelism 1 and 4.)
""")
s.ok(ORDERS_DDL)

agg = UpdAgg(lambda r: r['customer'], [count_star, sum_('amount')])
log = []
for part in parts_rows():
    log += agg.batch([('+I', r) for r in part])
s.q("SELECT customer, count(*) AS cnt, sum(amount) AS total FROM orders GROUP BY customer",
    [flat(*c) for c in log], types='TTIR', sort=None)

s.comment("A global aggregate (no key): one row, updated after every batch.")
agg = UpdAgg(lambda r: (), [count_star, max_('amount'), avg('qty')])
log = []
for part in parts_rows():
    log += agg.batch([('+I', r) for r in part])
s.q("SELECT count(*), max(amount), avg(qty) FROM orders",
    [flat(*c) for c in log], types='TIRR', sort=None)

s.comment("""An aggregate over an updating aggregate: how many customers have placed n orders.
The inner changes retract rows from the outer groups, which emit -D when they
become empty.""")
inner = UpdAgg(lambda r: r['customer'], [count_star])
outer = UpdAgg(lambda r: r['cnt'], [count_star, count('customer')])
log = []
for part in parts_rows():
    ch = inner.batch([('+I', r) for r in part])
    rows_ = [(op, dict(customer=k, cnt=v[0])) for (op, k, v) in ch]
    log += outer.batch(rows_)
s.q("""SELECT cnt, count(*) AS customers, count(customer) AS named_customers
FROM (SELECT customer, count(*) AS cnt FROM orders GROUP BY customer)
GROUP BY cnt""", [flat(*c) for c in log], types='TIII', sort=None)

s.comment("A filter and a projection over a changelog keep the row kinds.")
agg = UpdAgg(lambda r: r['product'], [sum_('qty')])
log = []
for part in parts_rows():
    log += [c for c in agg.batch([('+I', r) for r in part]) if c[2][0] is not None and c[2][0] > 10]
s.q("""SELECT upper(product), total_qty * 10 FROM (SELECT product, sum(qty) AS total_qty FROM orders GROUP BY product)
WHERE total_qty > 10""", [(op, k.upper(), v[0] * 10) for (op, k, v) in log], types='TTI', sort=None)

s.comment("SELECT DISTINCT is a group aggregate without aggregates: only +I.")
agg = UpdAgg(lambda r: r['product'], [])
log = []
for part in parts_rows():
    log += agg.batch([('+I', r) for r in part])
s.q("SELECT DISTINCT product FROM orders", [flat(*c) for c in log], types='TT', sort=None)
s.write(f'{OUT}/changelog.slt')

# ------------------------------------------------------------------ final states
s = Slt()
s.comment("""The final results of updating queries (non-windowed GROUP BY), at
parallelism 1 and 4. The harness applies each changelog (see
tests/sqllogictests.rs, "-- weir: final state") and compares what is left; a
changelog that retracts a row it never inserted fails the query.""")
s.ok(ORDERS_DDL)
R = rows()
def groupby(rows_, keyf, aggs):
    g = {}
    for r in rows_: g.setdefault(keyf(r), []).append(r)
    return [((k if isinstance(k, tuple) else (k,)), [a(rs) for a in aggs]) for k, rs in g.items()]
s.q("""-- weir: final state
SELECT customer, count(*) AS cnt, sum(amount) AS total, min(ts), max(qty), avg(amount)
FROM orders GROUP BY customer""", [(*k, *v) for k, v in groupby(R, lambda r: r['customer'], [count_star, sum_('amount'), min_('ts'), max_('qty'), avg('amount')])], types='TIRTIR')
s.q("""-- weir: final state
SELECT product, customer, count(*) FROM orders GROUP BY product, customer""",
    [(*k, *v) for k, v in groupby(R, lambda r: (r['product'], r['customer']), [count_star])], types='TTI')
s.q("""-- weir: final state
SELECT count(*), sum(qty), count(DISTINCT customer) FROM orders""",
    [(*v,) for k, v in groupby(R, lambda r: (), [count_star, sum_('qty'), count_distinct('customer')])], types='III')
per_c = groupby(R, lambda r: r['customer'], [count_star])
s.q("""-- weir: final state
SELECT cnt, count(*) AS customers FROM (SELECT customer, count(*) AS cnt FROM orders GROUP BY customer) GROUP BY cnt""",
    [(*k, *v) for k, v in groupby([dict(cnt=v[0]) for k, v in per_c], lambda r: r['cnt'], [count_star])], types='II')
per_p = groupby(R, lambda r: r['product'], [sum_('qty')])
s.q("""-- weir: final state
SELECT product, total_qty FROM (SELECT product, sum(qty) AS total_qty FROM orders GROUP BY product) WHERE total_qty > 10""",
    [(k[0], v[0]) for k, v in per_p if v[0] > 10], types='TI')
s.q("""-- weir: final state
SELECT DISTINCT customer FROM orders""", [(k[0],) for k, v in groupby(R, lambda r: r['customer'], [])], types='T')
s.comment("HAVING over an updating aggregate (rows enter the result late, through +U).")
s.q("""-- weir: final state
SELECT customer, min(amount), max(amount) FROM orders GROUP BY customer HAVING count(*) > 2""",
    [(*k, *v[:2]) for k, v in groupby(R, lambda r: r['customer'], [min_('amount'), max_('amount'), count_star]) if v[2] > 2], types='TRR')
s.comment("A non-windowed aggregate over the result of a window aggregate.")
per_w = window_agg(R, lambda r: tumble(r['ts'], MIN), [lambda r: r['customer']], [count_star], lambda s_, e, k, a: dict(customer=k[0], cnt=a[0]))
s.q("""-- weir: final state
SELECT customer, max(cnt) AS best_minute, count(*) AS active_minutes
FROM (SELECT window_start, window_end, customer, count(*) AS cnt
      FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
      GROUP BY window_start, window_end, customer)
GROUP BY customer""", [(*k, *v) for k, v in groupby(per_w, lambda r: r['customer'], [max_('cnt'), count_star])], types='TII')
s.comment("""With a single source subtask ('scan.parallelism' = '1') each aggregate subtask
sees the files in order, one batch per file, so the changelog of a single
group aggregate is the same multiset at any parallelism (its order across
keys is not).""")
s.ok(ORDERS_DDL.replace("CREATE TABLE orders", "CREATE TABLE orders_seq").replace("'format' = 'json')", "'format' = 'json', 'scan.parallelism' = '1')"))
agg = UpdAgg(lambda r: r['customer'], [count_star, sum_('amount')])
log = []
for part in parts_rows():
    log += agg.batch([('+I', r) for r in part])
s.q("SELECT customer, count(*) AS cnt, sum(amount) AS total FROM orders_seq GROUP BY customer",
    [flat(*c) for c in log], types='TTIR')
agg = UpdAgg(lambda r: (r['product'], None if r['qty'] is None else r['qty'] > 1), [max_('amount'), count_distinct('customer')])
log = []
for part in parts_rows():
    log += agg.batch([('+I', r) for r in part])
s.q("SELECT product, qty > 1, max(amount), count(DISTINCT customer) FROM orders_seq GROUP BY product, qty > 1",
    [(op, k[0], k[1], *v) for (op, k, v) in log], types='TTTRI')
s.write(f'{OUT}/changelog_final.slt')
