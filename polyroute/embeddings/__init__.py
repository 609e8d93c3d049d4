"""``POST /v1/embeddings`` over the fleet: which models embed, and failover that never mixes vector spaces.

An embedding model is one whose catalog family has the capability ``"embeddings"``, or
whose ``[models.NAME]`` says ``capabilities = ["embeddings"]``. A route is all embedding
models or none (``polyroute.config_embeddings``), and its embedding models are offers of
one family: vectors of two families live in two spaces, so a fallback from one to the
other would put vectors no search can compare into the client's index. Within a route,
an embeddings request fails over as a chat request does (``polyroute.attempts``: the
breakers, ``max_attempts``, the deadline, the classification of every failure).

    types    the request, one attempt, what a backend answers
    plan     the candidates a request may use, in the route's order
    walk     the attempts, one after another, within the route's budget
    dialects what each OpenAI-wire server takes where it differs from OpenAI (Mistral, Gemini)
"""
