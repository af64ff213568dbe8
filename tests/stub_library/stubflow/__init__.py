"""A fifth library as a folder outside the nablafuzz tree: its record (this file) and its adapter
(adapter.py), registered by `NABLAFUZZ_LIBRARIES=stubflow=stubflow` with this folder's parent
on the path.  Nothing else in nablafuzz names it (tests/test_adapter_conformance.py)."""
from nablafuzz.libraries.descriptor import Library

LIBRARY = Library("stubflow", "stubflow.adapter:make_adapter", numpy_prefixes=("stubflow.",),
                  env_report="`python -c 'import numpy; numpy.show_config()'`")
