"""Tenancy and accounting: virtual keys and teams, budgets and rate limits, the usage ledger.

- ``model``: keys, teams and their limits, one set of field names everywhere;
- ``stores``: the store protocols (keys, counters, ledger), atomic per key;
- ``memory`` and ``sqlite``: the stores of one machine; ``postgres``: keys, teams and the ledger
  shared by replicas; ``columns`` and ``blocking``: what the two SQL stores share;
- ``rediscounters``: the counters replicas share (``[store] redis``), one Lua script a step;
- ``quota``: the gatekeeper that reserves before the first attempt and settles after;
- ``ledger``: the writer of one row per request, off the hot path; ``ledger_process``: the
  observer that runs it in a process of its own (the default); ``spool``: the local file that
  holds its rows until a remote store has them;
- ``usage``: reports over the ledger; ``fault``: which requests the client's reasons ended (refused)
  and which the gateway failed, as every report counts them.
"""
