"""Server settings, resolved once: explicit argument > ``DRIP_*`` environment > default.

The environment is how ``drip serve --workers N`` (and ``uvicorn --factory
drip.server.app:create_app``) hands settings to every worker process:

- ``DRIP_DATABASE_URL``: ``sqlite:///PATH`` or ``postgresql://…`` (default: ``.drip/drip.db``)
- ``DRIP_PRICES``: ``meter=price`` pairs, comma-separated; ``DRIP_DEFAULT_PRICE``
- ``DRIP_PRODUCTION=1``: no ``/docs`` and no ``/openapi.json``
- ``DRIP_MIGRATE=0``: do not upgrade the schema on start (``drip db upgrade`` does it)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["DEFAULT_DATABASE", "Settings"]

#: the SQLite file used when no database is named
DEFAULT_DATABASE = os.path.join(".drip", "drip.db")

_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    """How one server process runs."""

    database_url: str
    prices: tuple[str, ...] = ()
    default_price: str = "0"
    production: bool = False
    migrate: bool = True

    @property
    def docs(self) -> bool:
        """Whether ``/docs`` and ``/openapi.json`` are served (local development only)."""
        return not self.production

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``DRIP_*`` variables (see the module docstring)."""
        env = os.environ if environ is None else environ
        # no folder is made here: ``create_app(url)`` reads these settings too
        url = env.get("DRIP_DATABASE_URL") or f"sqlite:///{os.path.abspath(DEFAULT_DATABASE)}"
        prices = tuple(p.strip() for p in env.get("DRIP_PRICES", "").split(",") if p.strip())
        return cls(
            database_url=url,
            prices=prices,
            default_price=env.get("DRIP_DEFAULT_PRICE", "0"),
            production=env.get("DRIP_PRODUCTION", "").lower() in _TRUE,
            migrate=env.get("DRIP_MIGRATE", "1").lower() in _TRUE,
        )

    def to_env(self) -> dict[str, str]:
        """The variables that make :meth:`from_env` give these settings back."""
        return {
            "DRIP_DATABASE_URL": self.database_url,
            "DRIP_PRICES": ",".join(self.prices),
            "DRIP_DEFAULT_PRICE": self.default_price,
            "DRIP_PRODUCTION": "1" if self.production else "0",
            "DRIP_MIGRATE": "1" if self.migrate else "0",
        }
