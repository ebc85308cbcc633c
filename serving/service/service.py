"""The BentoML service: one exported agent trading one account.

``bentoml serve serving.service.service:TraderService`` (what ``phemex-rl serve`` runs, and
what a container built by ``bentoml build`` / ``bentoml containerize`` runs) composes the
serving config from ``$PHEMEX_RL_SERVE_OVERRIDES`` (a JSON list of Hydra overrides, e.g.
``["mode=testnet", "agent=phemex-ppo-btc-5m"]``; empty: paper mode on the latest agent),
loads the agent and, at start-up, starts the trading loop as a background task.

One worker, always: the trading loop is the account's single writer (the journal's lease
refuses a second one). BentoML's own ``/livez``, ``/readyz`` and ``/metrics`` ask the
service through its hooks ``__is_alive__``, ``__is_ready__`` (ready only after
reconciliation and while bars are fresh) and ``__metrics__`` (the Trader's metrics appended
to BentoML's).
"""

from __future__ import annotations

import logging
import os

import bentoml

from serving.service.api import create_app
from serving.service.config import compose_serving, overrides_from_env
from serving.service.runtime import ServiceRuntime, preflight, resolve_agent_tag

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
log = logging.getLogger(__name__)

QUIET_PATHS = ("/status", "/livez", "/readyz", "/healthz", "/metrics")
"""Paths BentoML's access log skips (prefix match)."""
CONFIG = compose_serving(overrides_from_env())
"""The serving config of this process (a typo in ``$PHEMEX_RL_SERVE_OVERRIDES`` fails here)."""
AGENT_TAG = resolve_agent_tag(CONFIG.agent)
"""The model-store tag traded; ``bentoml build`` packs this model into the bento."""

app = create_app(
    lambda: bentoml.get_current_service().runtime,
    max_body_bytes=CONFIG.server.max_body_bytes,
    cors_origins=list(CONFIG.server.cors_origins),
)


@bentoml.service(
    name="phemex-rl-trader",
    workers=1,
    http={"host": CONFIG.server.host, "port": int(CONFIG.server.port)},
    # The events stream is long-lived; BentoML's request timeout would cut it.
    traffic={"timeout": 24 * 3600, "max_concurrency": 256},
    # Polled endpoints stay out of the access log: `phemex-rl serve --max-bars` polls /status,
    # probes and Prometheus poll the others (this list replaces BentoML's default one).
    logging={"access": {"skip_paths": list(QUIET_PATHS)}},
    envs=[{"name": "BENTOML_DO_NOT_TRACK", "value": "true"}],
)
@bentoml.asgi_app(app, path="/")
class TraderService:
    """Trades the agent ``AGENT_TAG`` with the settings ``CONFIG``; see the module doc."""

    agent_model = bentoml.models.BentoModel(AGENT_TAG)

    def __init__(self) -> None:
        import torch

        torch.set_num_threads(1)  # a small MLP: one thread is fastest and leaves a core free
        checks = preflight(CONFIG)  # refuses to start (and says why) before loading anything
        self.runtime = ServiceRuntime(CONFIG, checks, agent_tag=str(self.agent_model.tag))
        log.info(
            "%s mode, agent %s, config %s",
            CONFIG.mode.value,
            self.runtime.agent.tag,
            self.runtime.config_hash,
        )

    def __is_alive__(self) -> bool:
        return self.runtime.live()

    def __is_ready__(self) -> bool:
        ready, reason = self.runtime.ready()
        if not ready:
            log.debug("not ready: %s", reason)
        return ready

    def __metrics__(self, content: str) -> str:
        return content + self.runtime.metrics_text()
