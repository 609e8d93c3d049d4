"""The evaluation harness: run suites of prompts against models of the fleet, score, store, report.

    suites.py   load shipped and user suites (JSONL, a header line then one item a line)
    scorers.py  refusal detection (English, Chinese), letter, number, exact and regex scoring
    store.py    results per (model, suite, item) behind the ``ResultStore`` protocol; SQLite
    runner.py   one model at a time, failover off, rate-limit backoff, cost cap, resume
    report.py   accuracy or refusal rates, cost per 1,000 items and p50 latency per (model, suite)
"""
