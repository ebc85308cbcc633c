"""Paper accounts: who may trade on the loopback exchange, and with how much.

Accounts come from a YAML or JSON file::

    accounts:
      - api_key: paper-key
        secret: paper-secret
        balance: 10000        # USDT
        leverage: 10          # initial isolated leverage

(a bare list works too). Without a file there is one account, :data:`DEFAULT_ACCOUNT`, so
``ccxt.phemex({'apiKey': 'paper-key', 'secret': 'paper-secret'})`` pointed at the server just
works. Secrets are only held in memory: they are never logged, printed or persisted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_BALANCE = 10_000.0
DEFAULT_LEVERAGE = 10.0
"""Phemex's default leverage is 10x (cross); the paper account models isolated margin."""


@dataclass(frozen=True)
class AccountConfig:
    """One paper account's credentials and opening state.

    Attributes:
        api_key: the ``x-phemex-access-token`` a client sends.
        secret: the HMAC key its requests are signed with (never shown in ``repr``).
        balance: opening USDT wallet balance; used only when the account is first created,
            a persisted state keeps its own balance.
        leverage: opening isolated leverage (1 to the contract's maximum).
    """

    api_key: str
    secret: str = field(repr=False)
    balance: float = DEFAULT_BALANCE
    leverage: float = DEFAULT_LEVERAGE

    def __post_init__(self) -> None:
        if not self.api_key or not isinstance(self.api_key, str):
            raise ValueError(f"account api_key must be a non-empty string, got {self.api_key!r}")
        if not self.secret or not isinstance(self.secret, str):
            raise ValueError(f"account {self.api_key!r}: secret must be a non-empty string")
        if not (isinstance(self.balance, int | float) and math.isfinite(self.balance)):
            raise ValueError(
                f"account {self.api_key!r}: balance must be a number, got {self.balance!r}"
            )
        if self.balance <= 0:
            raise ValueError(
                f"account {self.api_key!r}: balance must be > 0 USDT, got {self.balance!r}"
            )
        if not (isinstance(self.leverage, int | float) and self.leverage >= 1):
            raise ValueError(
                f"account {self.api_key!r}: leverage must be >= 1, got {self.leverage!r}"
            )


DEFAULT_ACCOUNT = AccountConfig(api_key="paper-key", secret="paper-secret")
"""The one account of an exchange started without an accounts file: 10,000 USDT, 10x."""


def load_accounts(path: str | Path) -> list[AccountConfig]:
    """Read accounts from a ``.yaml``/``.yml`` or ``.json`` file (see the module docstring)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        raw = yaml.safe_load(text)
    elif path.suffix.lower() == ".json":
        raw = json.loads(text)
    else:
        raise ValueError(f"{path}: accounts file must end in .yaml, .yml or .json")
    return parse_accounts(raw, source=str(path))


def parse_accounts(raw: Any, source: str = "accounts") -> list[AccountConfig]:
    """Accounts from parsed YAML/JSON: ``{"accounts": [...]}`` or a bare list of mappings."""
    if isinstance(raw, dict):
        raw = raw.get("accounts")
    if not isinstance(raw, list) or not raw:
        raise ValueError(
            f"{source}: expected a non-empty list of accounts (or {{accounts: [...]}})"
        )
    known = {"api_key", "secret", "balance", "leverage"}
    accounts = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise ValueError(f"{source}: account #{i} must be a mapping, got {entry!r}")
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ValueError(
                f"{source}: account #{i} has unknown field(s) {unknown}; known: {sorted(known)}"
            )
        try:
            accounts.append(AccountConfig(**entry))
        except TypeError as exc:  # a required field is missing
            raise ValueError(f"{source}: account #{i}: {exc}") from None
    check_unique(accounts, source)
    return accounts


def check_unique(accounts: Sequence[AccountConfig], source: str = "accounts") -> None:
    keys = [a.api_key for a in accounts]
    duplicated = sorted({k for k in keys if keys.count(k) > 1})
    if duplicated:
        raise ValueError(f"{source}: api_key(s) {duplicated} appear more than once")
