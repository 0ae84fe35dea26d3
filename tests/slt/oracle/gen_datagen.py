from oracle import *
from paths import SLT as OUT
N=5000
T0=dt.datetime(2024,1,1)
MS=dt.timedelta(milliseconds=1)
R=[dict(id=r+1, ts=T0 + r*MS) for r in range(N)]
s=Slt()
s.comment(f"""Bounded datagen: with 'rows-per-second' = '0' (unlimited) row r is at
2024-01-01 00:00:00 + r ms, and a sequence id is r + 1, whatever the parallelism
(subtask i of p makes the rows r = i mod p). {N} rows, so the job ends.""")
s.ok(f"""CREATE TABLE gen (id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
WITH ('connector' = 'datagen', 'rows-per-second' = '0', 'number-of-rows' = '{N}',
      'fields.id.kind' = 'sequence', 'fields.id.start' = '1')""")
s.q("""-- weir: final state
SELECT count(*), sum(id), min(id), max(id), min(ts), max(ts) FROM gen""",
    [(N, N*(N+1)//2, 1, N, R[0]['ts'], R[-1]['ts'])], types='IIIITT')
s.q("SELECT id, ts FROM gen WHERE id % 1000 = 0 OR id <= 2",
    [(r['id'], r['ts']) for r in R if r['id'] % 1000 == 0 or r['id'] <= 2], types='IT')
s.q("""SELECT window_start, window_end, count(*), sum(id), min(id), max(id)
FROM TABLE(TUMBLE(TABLE gen, DESCRIPTOR(ts), INTERVAL '1' SECOND))
GROUP BY window_start, window_end""",
    window_agg(R, lambda r: tumble(r['ts'], SEC), [], [count_star, sum_('id'), min_('id'), max_('id')], lambda s_, e, k, a: (s_, e, *a)), types='TTIIII')
s.q("""SELECT window_start, window_end, id % 3 AS m, count(*)
FROM TABLE(HOP(TABLE gen, DESCRIPTOR(ts), INTERVAL '500' MILLISECOND, INTERVAL '1500' MILLISECOND))
GROUP BY window_start, window_end, id % 3""",
    window_agg(R, lambda r: hop(r['ts'], 500*MS, 1500*MS), [lambda r: r['id'] % 3], [count_star], lambda s_, e, k, a: (s_, e, *k, *a)), types='TTII')
s.q("""SELECT window_start, window_end, count(*)
FROM TABLE(CUMULATE(TABLE gen, DESCRIPTOR(ts), INTERVAL '250' MILLISECOND, INTERVAL '1' SECOND))
GROUP BY window_start, window_end""",
    window_agg(R, lambda r: cumulate(r['ts'], 250*MS, SEC), [], [count_star], lambda s_, e, k, a: (s_, e, *a)), types='TTI')
s.comment("Every row in the same session (1 ms apart, gap 10 ms), per key of id % 4.")
s.q("""SELECT window_start, window_end, count(*)
FROM TABLE(SESSION(TABLE gen, DESCRIPTOR(ts), INTERVAL '10' MILLISECOND))
GROUP BY window_start, window_end, id % 4""",
    [(T0 + k*MS, T0 + (N - 4 + k)*MS + 10*MS, N//4) for k in range(4)], types='TTI')
s.ok("CREATE TABLE nowhere (id BIGINT, ts TIMESTAMP(3)) WITH ('connector' = 'blackhole')")
s.ok("INSERT INTO nowhere SELECT * FROM gen")
s.write(f'{OUT}/datagen.slt')
