import os
HERE = os.path.dirname(os.path.abspath(__file__))
SLT = os.path.dirname(HERE)                                # tests/slt
DATA = os.path.join(os.path.dirname(SLT), 'data')          # tests/data
