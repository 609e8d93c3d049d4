"""The web console at ``/console``: the fleet, the spend and the quality, for whoever holds the admin key.

It is on whenever the admin API is (``[admin] secret`` set, with a store). The pages
are static files shipped in the package (``static/``: HTML, CSS and JavaScript
modules, no build step, nothing fetched from elsewhere); they read
``/console/api/...``, which answers from the gateway's own parts:

- ``recent``: the Overview's minutes and windows, and each model's recent speed (Fleet);
- ``ledger_tail``: both filled from the usage ledger (every worker's requests);
- ``views``: Fleet (catalog facts, breakers), Usage (the ledger), Routes;
- ``evals_view``: the eval store's report rows;
- ``api``: the JSON endpoints, key actions through the admin API's code;
- ``sessions`` and ``web``: the login, the signed session cookie, logouts in the store, CSRF,
  and the headers.
"""

from polyroute.console.recent import Recent
from polyroute.console.web import Console

__all__ = ["Console", "Recent"]
