"""Reproducible benchmarks: polyroute's overhead against a direct call and LiteLLM.

Four processes take part in every measurement, each in its own process so that
none shares an event loop with another:

    loadgen (bench.loadgen) --HTTP/1.1--> target --HTTP/1.1--> fake upstream (bench.upstream)

The target is "direct" (the generator talks to the upstream itself), polyroute,
or LiteLLM's proxy. The saturation scenarios use C twins of the generator and the
upstream (bench.native), which cost the shared CPUs far less per request.
``python -m bench`` (or ``bench/run``) orchestrates the run (bench.runner) and
writes bench/results/latest.{json,md} (bench.report).
"""
