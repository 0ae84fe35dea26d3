"""Writes tests/data/orders/part-{0,1,2}.json and tests/data/orders.csv from data.ORDERS."""
import json
from data import *
from paths import DATA

def jline(r):
    o, c, p, a, q, s = r
    d = {"order_id": o}
    if c is not None:
        d["customer"] = c  # a missing field reads as NULL
    d["product"] = p
    d["amount"] = a  # an explicit null
    if q is not None:
        d["qty"] = q
    d["ts"] = fmt(t(s))
    return json.dumps(d)

for i, part in enumerate(PARTS):
    with open(f'{DATA}/orders/part-{i}.json', 'w') as f:
        for r in part:
            f.write(jline(r) + '\n')
with open(f'{DATA}/orders.csv', 'w') as f:
    f.write('order_id,customer,product,amount,qty,ts\n')
    for (o, c, p, a, q, s) in ORDERS:
        f.write(','.join(['%d' % o, c or '', p, '' if a is None else repr(a), '' if q is None else str(q), fmt(t(s))]) + '\n')
