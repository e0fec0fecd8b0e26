"""The bench's phases, one module each: ``sources`` (read collections, make first-stage runs),
``teacher`` (train and score with teachers), ``build`` (one dataset per objective) and
``evaluate`` (re-rank the suites). :mod:`st_distill.bench.runner` runs them in order."""
