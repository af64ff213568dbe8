"""`nablafuzz modelfuzz`: coverage-guided fuzzing of models (TensorFuzz's design) for AD failures.

`coverage.py` nearest-neighbour coverage; `loop.py` the fuzz loop (corpus, sampling,
mutation); `client.py` a model's worker; `findings.py` hits -> confirmed, minimised reports;
`run.py` one command's runs, summary and plot; `replay.py` a model report run again.
"""
