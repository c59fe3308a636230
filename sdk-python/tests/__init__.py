"""Tests of the Python SDK (stdlib unittest only).

Run from the repository root with
`PYTHONPATH=sdk-python/src python3 -m unittest discover -s sdk-python/tests -t sdk-python`, or from
`sdk-python/` with `python3 -m unittest discover -s tests`.
"""

import os
import sys

# Test modules import their helpers as `_support`, whichever way discovery imported them.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
