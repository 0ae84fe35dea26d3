from oracle import *
import json
from paths import SLT as OUT
from paths import DATA
D = DATA + '/late'
T=lambda h,m,s: dt.datetime(2024,1,1,h,m,s)
P0=[(1,'a',T(10,0,10)),(2,'b',T(10,0,40)),(3,'a',T(10,1,20)),(4,'b',T(10,2,30))]
P1=[(5,'a',T(10,0,50)),(6,'b',T(10,1,59)),(7,'a',T(10,2,10)),(8,'b',T(10,3,5)),(9,'a',T(10,2,24))]
for i,part in enumerate([P0,P1]):
    with open(f'{D}/part-{i}.json','w') as f:
        for (id_,k,ts) in part:
            f.write(json.dumps({"id": id_, "k": k, "ts": fmt(ts)})+'\n')
DELAY=5*SEC
wm0=max(ts for _,_,ts in P0)-DELAY
rows_=[dict(id=i,k=k,ts=ts,wm=None) for (i,k,ts) in P0]+[dict(id=i,k=k,ts=ts,wm=wm0) for (i,k,ts) in P1]
MS=dt.timedelta(milliseconds=1)
def live(assign):
    return lambda r: [w for w in assign(r) if r['wm'] is None or w[1]-MS > r['wm']]
s=Slt()
s.comment(f"""Late rows: rows whose windows have all fired when they arrive are dropped.

tests/data/late/part-0.json and part-1.json are read one after the other by a
single source subtask ('scan.parallelism' = '1', at parallelism 1 and 4 alike),
and each file is one batch: after part-0 the watermark is its largest time
minus 5 s, {fmt(wm0)}. Rows 5 (10:00:50) and 6 (10:01:59) of part-1 are behind
it; so is row 9 (10:02:24), but its 1-minute window [10:02, 10:03) has not
fired yet, so it still counts. A window fires when the watermark reaches its
end - 1 ms. (tests/late_rows.rs checks the late-rows counter of SHOW JOBS.)""")
s.ok("""CREATE TABLE events (id BIGINT, k STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH ('connector' = 'filesystem', 'path' = '__DATA__/late', 'format' = 'json', 'scan.parallelism' = '1')""")
s.comment("Stateless queries drop nothing.")
s.q("SELECT id, k, ts FROM events", [(r['id'], r['k'], r['ts']) for r in rows_], types='ITT')
s.q("""-- weir: final state
SELECT k, count(*) FROM events GROUP BY k""", [('a', 5), ('b', 4)], types='TI')
s.comment("TUMBLE: rows 5 and 6 are dropped.")
s.q("""SELECT window_start, window_end, count(*), sum(id)
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end""",
    window_agg(rows_, live(lambda r: tumble(r['ts'], MIN)), [], [count_star, sum_('id')], lambda s_, e, k, a: (s_, e, *a)), types='TTII')
s.q("""SELECT window_start, k, count(*), min(id)
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, k""",
    window_agg(rows_, live(lambda r: tumble(r['ts'], MIN)), [lambda r: r['k']], [count_star, min_('id')], lambda s_, e, k, a: (s_, *k, *a)), types='TTII')
s.comment("HOP: a row is added to those of its windows that have not fired (row 6 to [10:01, 10:03) only).")
s.q("""SELECT window_start, window_end, count(*), sum(id)
FROM TABLE(HOP(TABLE events, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '2' MINUTE))
GROUP BY window_start, window_end""",
    window_agg(rows_, live(lambda r: hop(r['ts'], MIN, 2*MIN)), [], [count_star, sum_('id')], lambda s_, e, k, a: (s_, e, *a)), types='TTII')
s.comment("CUMULATE: likewise (rows 5 and 6 only count in [10:00, 10:03)).")
s.q("""SELECT window_start, window_end, count(*), sum(id)
FROM TABLE(CUMULATE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '3' MINUTE))
GROUP BY window_start, window_end""",
    window_agg(rows_, live(lambda r: cumulate(r['ts'], MIN, 3*MIN)), [], [count_star, sum_('id')], lambda s_, e, k, a: (s_, e, *a)), types='TTII')
s.comment("""SESSION (gap 30 s): a row is late if its own window [ts, ts + gap) has fired:
row 5 is, row 6 (10:01:59, window end 10:02:29) is not.""")
GAP=30*SEC
kept=[r for r in rows_ if r['wm'] is None or r['ts']+GAP-MS > r['wm']]
s.q("""SELECT k, window_start, window_end, count(*), sum(id)
FROM TABLE(SESSION(TABLE events PARTITION BY k, DESCRIPTOR(ts), INTERVAL '30' SECOND))
GROUP BY k, window_start, window_end""",
    [(k, st, en, len(rs), sum(r['id'] for r in rs)) for (k, st, en, rs) in sessions(kept, GAP, lambda r: r['k'])], types='TTTII')
s.comment("The TUMBLE table function without aggregate drops nothing either.")
s.q("SELECT id, window_start FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' MINUTE))",
    [(r['id'], tumble(r['ts'], MIN)[0][0]) for r in rows_], types='IT')
s.write(f'{OUT}/late.slt')
