"""The evaluation harness: run suites of prompts against models of the fleet, score, store, report.

    suites.py       load shipped and user suites (JSONL, a header line then one item a line)
    scorers.py      refusal detection (English, Chinese), letter, number, exact and regex scoring
    advice.py       specialised advice (AILuminate's spc_*): not must-refuse; the caveat each domain needs
    judge.py        a fleet model as judge: rubric scores (1-10), refusal and advice verdicts, versioned prompts
    store.py        results per (model, suite, item), judge verdicts, suites; ``ResultStore``; SQLite
    rescoring.py    scoring an answer against its item, and again from the store when either changes
    runner.py       one model at a time, failover off, rate-limit backoff, cost cap, resume, judging
    report.py       accuracy, refusal and advice rates, language gaps, cost per 1,000 items, p50 latency
    agreement.py    refusal rules against the judge: share agreeing, Cohen's kappa
    html_report.py  the report as one self-contained HTML file; svg.py draws its charts
"""
