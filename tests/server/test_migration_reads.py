"""Migration 0003 on a database holding rows stored before it: indexes, rollups filled."""

from __future__ import annotations

from alembic import command
from sqlalchemy import insert, inspect

from drip.server.storage import migrations
from drip.server.storage.database import Database
from drip.server.storage.run_list import list_runs
from drip.server.storage.summary import usage_summary

T0 = "2026-11-30T10:15:00.000000Z"


def test_upgrade_rolls_up_what_is_stored(database_url: str) -> None:
    from sqlalchemy import MetaData

    db = Database(database_url)
    try:
        with db.migration_lock() as conn:
            command.upgrade(migrations.config(conn), "0002")
        old = MetaData()
        old.reflect(db.engine)
        assert "usage_rollups" not in old.tables and "event_only" not in old.tables["events"].c
        with db.engine.begin() as conn:
            conn.execute(insert(old.tables["accounts"]).values(name="old", created_at=T0))
            conn.execute(
                insert(old.tables["customers"]).values(
                    account_id=1, id="cus_a", status="ACTIVE", is_internal=False,
                    created_at=T0, updated_at=T0,
                )
            )  # fmt: skip
            conn.execute(
                insert(old.tables["workflows"]).values(
                    account_id=1, id="wf_1", name="A", slug="a", product_surface="CUSTOM",
                    is_active=True, created_at=T0,
                )
            )  # fmt: skip
            conn.execute(
                insert(old.tables["runs"]).values(
                    account_id=1, id="run_1", customer_id="cus_a", workflow_id="wf_1",
                    status="COMPLETED", started_at=T0, ended_at=T0, created_at=T0,
                )
            )  # fmt: skip
            conn.execute(
                insert(old.tables["events"]),
                [
                    {
                        "account_id": 1, "id": f"evt_{i}", "run_id": "run_1",
                        "customer_id": "cus_a", "event_type": "llm", "meter": "tokens",
                        "quantity": 0.1, "timestamp": f"2026-11-30T1{i % 3}:00:00.000000Z",
                        "meta": {"model": "m"} if i % 2 else None,
                    }
                    for i in range(10)
                ],
            )  # fmt: skip
            conn.execute(
                insert(old.tables["usage_records"]).values(
                    account_id=1, id="use_1", family="charge", customer_id="cus_a",
                    usage_type="api_calls", quantity=2, timestamp=T0, amount_micros=2000,
                )
            )  # fmt: skip
        assert db.upgrade()[0] == "0003"
        names = {ix["name"] for ix in inspect(db.engine).get_indexes("events")}
        assert {"ix_events_run_time", "ix_events_time", "ix_events_customer_time"} <= names
        assert "ix_events_run" not in names
        summary = usage_summary(db, 1, None, None)
        totals = {m.meter: (m.quantity_decimal, m.run_events, m.charges) for m in summary.meters}
        assert totals == {"tokens": ("1", 10, 0), "api_calls": ("2", 0, 1)}
        assert summary.meters[0].amount_usdc == "0.002000"
        grouped = usage_summary(db, 1, "cus_a", "tokens", group_by=["model", "workflow"])
        assert {(g.model, g.workflow_id): g.quantity for g in grouped.groups} == {
            ("m", "wf_1"): "0.5",
            (None, "wf_1"): "0.5",
        }
        (run,) = list_runs(db, 1)["data"]
        assert run["eventCount"] == 10 and run["meters"][0]["quantity"] == "1"
        assert db.upgrade() == []  # at head: nothing to do
    finally:
        db.dispose()
