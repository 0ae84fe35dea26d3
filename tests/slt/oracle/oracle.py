import datetime as dt, math
from data import *

SEC = dt.timedelta(seconds=1)
MIN = dt.timedelta(minutes=1)
EPOCH = dt.datetime(1970,1,1)

def floor_to(ts, size, offset=dt.timedelta(0)):
    n = (ts - EPOCH - offset) // size
    return EPOCH + offset + n * size

def tumble(ts, size, offset=dt.timedelta(0)):
    s = floor_to(ts, size, offset)
    return [(s, s + size)]

def hop(ts, slide, size, offset=dt.timedelta(0)):
    s = floor_to(ts, slide, offset)
    out = []
    while s + size > ts:
        out.append((s, s + size))
        s -= slide
    return out

def cumulate(ts, step, maxsize, offset=dt.timedelta(0)):
    base = floor_to(ts, maxsize, offset)
    out = []
    e = base + step
    while e <= base + maxsize:
        if e > ts:
            out.append((base, e))
        e += step
    return out

def sessions(rows, gap, key):
    """rows with ts; returns list of (key, start, end, rows)."""
    by = {}
    for r in rows:
        by.setdefault(key(r), []).append(r)
    out = []
    for k, rs in by.items():
        rs = sorted(rs, key=lambda r: r['ts'])
        cur = None
        for r in rs:
            if cur and r['ts'] <= cur[2]:  # touching windows merge, as in Flink
                cur[2] = max(cur[2], r['ts'] + gap); cur[3].append(r)
            else:
                cur = [k, r['ts'], r['ts'] + gap, [r]]
                out.append(cur)
    return [tuple(c) for c in out]

# aggregates
def count_star(rs): return len(rs)
def count(col): return lambda rs: sum(1 for r in rs if r[col] is not None)
def nn(col, rs): return [r[col] for r in rs if r[col] is not None]
def sum_(col): return lambda rs: (sum(nn(col, rs)) if nn(col, rs) else None)
def min_(col): return lambda rs: (min(nn(col, rs)) if nn(col, rs) else None)
def max_(col): return lambda rs: (max(nn(col, rs)) if nn(col, rs) else None)
def avg(col): return lambda rs: (sum(nn(col, rs)) / len(nn(col, rs)) if nn(col, rs) else None)
def count_distinct(col): return lambda rs: len(set(nn(col, rs)))

def render(v):
    if v is None: return 'NULL'
    if isinstance(v, bool): return 'true' if v else 'false'
    if isinstance(v, dt.datetime): return fmt(v)
    if isinstance(v, float): return repr(v)
    return str(v)

def window_agg(rows, assign, keys, aggs, out_cols):
    """assign(row) -> [(start,end)]; keys: list of (name, fn); aggs: list of fn(rows).
    out_cols: function (start, end, keyvals, aggvals) -> tuple."""
    groups = {}
    for r in rows:
        for (s, e) in assign(r):
            k = (s, e) + tuple(f(r) for f in keys)
            groups.setdefault(k, []).append(r)
    out = []
    for k, rs in groups.items():
        out.append(out_cols(k[0], k[1], k[2:], [a(rs) for a in aggs]))
    return out

class Slt:
    def __init__(self, header=''):
        self.parts = [header] if header else []
    def raw(self, text):
        self.parts.append(text.strip('\n') + '\n')
    def comment(self, text):
        self.parts.append('\n'.join('# ' + l if l else '#' for l in text.strip('\n').split('\n')) + '\n')
    def ok(self, sql, cond=None):
        c = cond + '\n' if cond else ''
        self.parts.append(f'{c}statement ok\n{sql.strip()}\n')
    def err(self, sql, regex, kind='statement'):
        self.parts.append(f'{kind} error {regex}\n{sql.strip()}\n')
    def q(self, sql, rows, types=None, sort='rowsort', cond=None):
        rows = [tuple(render(v) if not isinstance(v, str) else v for v in r) for r in rows]
        ncols = len(rows[0]) if rows else (len(types) if types else 1)
        types = types or 'T' * ncols
        c = cond + '\n' if cond else ''
        s = f' {sort}' if sort else ''
        if sort == 'rowsort':
            rows = sorted(rows)  # as the runner sorts actual rows (Vec<String> order)
        body = '\n'.join(' '.join(r) for r in rows)
        self.parts.append(f'{c}query {types}{s}\n{sql.strip()}\n----\n{body}\n' if rows else f'{c}query {types}{s}\n{sql.strip()}\n----\n')
    def write(self, path):
        open(path, 'w').write('\n'.join(self.parts))
