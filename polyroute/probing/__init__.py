"""Probing: asking a model the smallest real request, to learn whether it answers and if not why.

- ``ask``: one model through its own adapter, the failure classified by the error tree and
  guarded (secrets out); no printing, no breakers. ``polyroute probe`` asks a config's
  models with it before any traffic does;
- ``hints``: each result in plain words, and what the operator can do about it;
- ``on_demand``: a running gateway's models asked at an operator's word (``POST /admin/probe``,
  the console's Fleet page), each outcome told to the model's breakers as an attempt's is,
  written to the usage ledger, at most one probe of a model every few seconds.
"""
