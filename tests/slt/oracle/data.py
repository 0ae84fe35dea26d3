# Source of truth for tests/data: rows + helpers to compute expected results.
import json, datetime as dt
T0 = dt.datetime(2024,1,1,10,0,0)
def t(s):  # "MM:SS.mmm" after 10:00
    m, rest = s.split(':')
    sec = float(rest)
    return T0 + dt.timedelta(minutes=int(m), seconds=sec)
# order_id, customer, product, amount, qty, ts
ORDERS = [
 (1, 'alice', 'apple', 10.0, 1, '00:05'),
 (2, 'bob', 'banana', 20.5, 2, '00:12'),
 (3, 'alice', 'cherry', 7.25, 3, '00:30'),
 (4, 'carol', 'apple', 15.0, 1, '00:58'),
 (5, 'bob', 'apple', None, 4, '00:45'),
 (6, 'alice', 'banana', 3.5, 2, '01:02'),
 (7, None, 'cherry', 8.0, 1, '01:15'),
 (8, 'carol', 'banana', 12.0, 5, '01:10'),
 (9, 'bob', 'cherry', 30.0, 2, '01:40'),
 (10, 'alice', 'apple', 5.0, 1, '01:59.999'),
 # part 1
 (11, 'carol', 'cherry', 9.75, 3, '02:00'),
 (12, 'bob', 'banana', 20.5, 1, '02:20'),
 (13, 'alice', 'apple', 10.0, 2, '02:21'),
 (14, 'dave', 'banana', 100.0, 10, '02:50'),
 (15, 'carol', 'apple', 15.0, 1, '02:35'),
 (16, 'bob', 'apple', 1.25, 1, '03:05'),
 (17, 'alice', 'cherry', None, None, '03:30'),
 (18, 'dave', 'apple', 50.0, 5, '03:59'),
 # part 2
 (19, None, 'banana', 2.0, 1, '04:10'),
 (20, 'carol', 'banana', 6.0, 2, '04:45'),
 (21, 'bob', 'cherry', 4.5, 1, '05:30'),
 (22, 'alice', 'banana', 11.0, 1, '07:00'),
 (23, 'carol', 'apple', 7.5, 3, '06:40'),
 (24, 'bob', 'apple', 2.5, 2, '07:01'),
]
PARTS = [ORDERS[0:10], ORDERS[10:18], ORDERS[18:]]
def fmt(ts):
    return ts.strftime('%Y-%m-%d %H:%M:%S.') + '%03d' % (ts.microsecond // 1000)
def rows():
    return [dict(order_id=o, customer=c, product=p, amount=a, qty=q, ts=t(s)) for (o,c,p,a,q,s) in ORDERS]
