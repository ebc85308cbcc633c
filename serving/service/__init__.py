"""The trading service: one exported agent trading one account, as a BentoML service.

Modules: ``config`` (typed Hydra settings per mode), ``secrets`` (keys and the control token),
``runtime`` (preflight, venue, client and the Trader of one process), ``act`` (``POST /act``),
``api`` (the HTTP API), ``service`` (the BentoML service), ``cli`` (``phemex-rl serve``) and
``demo`` (``make demo``'s last step). See ``docs/deployment.md``. Nothing is imported here.
"""
