"""On-chain addresses: an EVM address (``0x`` + hex) names one wallet in any letter case (EIP-55
checksums are mixed case), so look-up and uniqueness ignore its case while the customer keeps
the address as first given; other addresses (base58, ...) stay case-sensitive. Migration 0004
keys the customers stored before it, keeping both rows of a wallet stored twice."""

from __future__ import annotations

import httpx
import pytest
from alembic import command
from sqlalchemy import MetaData, insert

from drip.server import start_server
from drip.server.storage import migrations
from drip.server.storage.database import Database

CHECKSUMMED = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55's own example
T0 = "2026-11-30T10:15:00.000000Z"


def test_an_evm_address_in_another_case_is_the_same_customer(api: httpx.Client) -> None:
    first = api.post("/customers", json={"onchainAddress": CHECKSUMMED})
    assert first.status_code == 201, first.text
    for spelling in (CHECKSUMMED.lower(), "0X" + CHECKSUMMED[2:].upper()):
        again = api.post("/customers", json={"onchainAddress": spelling})
        assert again.status_code == 409, again.text
        assert again.json()["existingCustomerId"] == first.json()["id"]
        same = api.post("/customers", json={"onchainAddress": spelling, "returnExisting": True})
        assert same.status_code == 200, same.text
        assert same.json()["id"] == first.json()["id"] and same.json()["isDuplicate"] is True
        assert same.json()["onchainAddress"] == CHECKSUMMED  # as first given
    assert api.get("/customers").json()["count"] == 1


def test_an_external_id_cannot_take_a_wallet_another_customer_holds_in_another_case(
    api: httpx.Client,
) -> None:
    holder = api.post("/customers", json={"onchainAddress": CHECKSUMMED.lower()}).json()
    api.post("/customers", json={"externalCustomerId": "later"})
    taking = api.post(
        "/customers",
        json={"externalCustomerId": "later", "onchainAddress": CHECKSUMMED, "returnExisting": True},
    )
    assert taking.status_code == 409, taking.text
    listed = {c["id"]: c["onchainAddress"] for c in api.get("/customers").json()["data"]}
    assert list(listed.values()).count(None) == 1 and listed[holder["id"]] == CHECKSUMMED.lower()
    # and one it does not hold is completed, kept as given
    free = "0xAbCdEf0000000000000000000000000000000001"
    filled = api.post(
        "/customers",
        json={"externalCustomerId": "later", "onchainAddress": free, "returnExisting": True},
    )
    assert filled.status_code == 200 and filled.json()["onchainAddress"] == free
    clash = api.post("/customers", json={"onchainAddress": free.lower()})
    assert clash.status_code == 409 and clash.json()["existingCustomerId"] == filled.json()["id"]


@pytest.mark.parametrize(
    "pair",
    [
        ("So1anaWa11etAbc", "so1anawa11etabc"),  # base58: case is part of the address
        ("0xAbCg", "0xabcg"),  # not hex: not an EVM address
    ],
)
def test_other_addresses_are_case_sensitive(api: httpx.Client, pair: tuple[str, str]) -> None:
    for address in pair:
        made = api.post("/customers", json={"onchainAddress": address})
        assert made.status_code == 201, made.text
    assert api.get("/customers").json()["count"] == 2


def test_upgrade_keys_the_addresses_stored_before(database_url: str) -> None:
    db = Database(database_url)
    try:
        with db.migration_lock() as conn:
            command.upgrade(migrations.config(conn), "0003")
        old = MetaData()
        old.reflect(db.engine)
        with db.engine.begin() as conn:
            conn.execute(insert(old.tables["accounts"]).values(name="default", created_at=T0))
            conn.execute(insert(old.tables["accounts"]).values(name="other", created_at=T0))
            conn.execute(
                insert(old.tables["customers"]),
                [
                    {
                        "account_id": account, "id": cid, "onchain_address": address,
                        "status": "ACTIVE", "is_internal": False, "created_at": T0,
                        "updated_at": T0,
                    }
                    for account, cid, address in (
                        (1, "cus_first", CHECKSUMMED),
                        (1, "cus_second", CHECKSUMMED.lower()),  # the same wallet, stored twice
                        (1, "cus_sol", "So1ana"),
                        (1, "cus_none", None),
                        (2, "cus_elsewhere", CHECKSUMMED.upper().replace("0X", "0x")),
                    )
                ],
            )  # fmt: skip
        assert db.upgrade()[-1] == migrations.head()
    finally:
        db.dispose()
    with start_server(database_url) as server:
        key = server.create_key("default")
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=f"{server.url}/v1", headers=headers) as api:
            listed = {c["id"]: c["onchainAddress"] for c in api.get("/customers").json()["data"]}
            assert listed == {
                "cus_first": CHECKSUMMED,
                "cus_second": CHECKSUMMED.lower(),
                "cus_sol": "So1ana",
                "cus_none": None,
            }
            again = api.post("/customers", json={"onchainAddress": CHECKSUMMED.upper()[2:]})
            assert again.status_code == 201  # no 0x: not an EVM address
            clash = api.post("/customers", json={"onchainAddress": "0x" + CHECKSUMMED[2:].upper()})
            assert clash.status_code == 409 and clash.json()["existingCustomerId"] == "cus_first"
            assert api.post("/customers", json={"onchainAddress": "so1ana"}).status_code == 201


def test_a_taken_address_is_named_as_the_conflict(api: httpx.Client) -> None:
    """A new external id with an address another customer holds: the 409 names the address,
    not the external id (which no customer has)."""
    holder = api.post("/customers", json={"onchainAddress": CHECKSUMMED}).json()
    for extra in ({}, {"returnExisting": True}):
        body = {"externalCustomerId": "new_user", "onchainAddress": CHECKSUMMED.lower(), **extra}
        clash = api.post("/customers", json=body)
        assert clash.status_code == 409, clash.text
        assert clash.json()["existingCustomerId"] == holder["id"]
        assert "onchainAddress" in clash.json()["message"], clash.json()["message"]
    taken = api.post("/customers", json={"externalCustomerId": "u2"}).json()
    again = api.post("/customers", json={"externalCustomerId": "u2", "onchainAddress": "0x1234"})
    assert again.status_code == 409 and again.json()["existingCustomerId"] == taken["id"]
    assert "externalCustomerId" in again.json()["message"]
