"""Poison among good records, through the SDK into the real server: every good record is
stored, every poison record is reported alone (at the call, or by the server item by item, or
found by splitting a batch the server refused whole), and nothing stops delivery."""

from __future__ import annotations

import json
from typing import Any

from drip import Drip
from drip.errors import DripDeliveryError, DripValidationError

LONE = "\udcff"  # what b"\xff" decodes to with surrogateescape


def _raw(rec: tuple[Any, ...], clock: object) -> str:
    """A record already encoded: stands for what an older SDK or a damaged spool might send."""
    return str(rec[1])


def test_poison_of_each_kind_among_5000_good_records(account: Any, customer: str) -> None:
    errors: list[BaseException] = []
    client = Drip(account.secret_key, account.base_url, on_error=errors.append)
    poison_at_call = 0

    @client.metered("poison.good")
    def good(i: int) -> int:
        return i

    for r in range(50):
        with client.run("poisoned", customer_id=customer) as run:
            for i in range(100):
                good(i)
                if i == 50:  # one poison record of each kind in each of the first runs
                    kind = r % 7
                    if kind == 0:
                        run.event("bad", metadata={"file": LONE})
                    elif kind == 1:
                        run.event("bad", quantity=1e27)
                    elif kind == 2:
                        run.event("bad", description="nul\x00byte")
                    elif kind == 3:
                        run.event("bad", units=LONE)
                    elif kind == 4:
                        deep: dict[str, Any] = {}
                        for _ in range(100):
                            deep = {"a": deep}
                        run.event("bad", metadata=deep)
                    elif kind == 5:
                        run.event("bad", metadata={"blob": "x" * 100_000})
                    else:
                        run.event("bad", quantity=float("nan"))
                    poison_at_call += 1
    # poison the client checks cannot see: items a server must refuse one by one
    with client.run("raw", customer_id=customer) as raw_run:
        ids = []
        for n, item in enumerate(
            [
                {"quantity": 10**27},  # beyond storage and pricing
                {"quantity": -5},  # negative
                {"description": "nul\x00"},  # NUL
                {"metadata": {"k": LONE}},  # lone surrogate (JSON-escaped on the wire)
            ]
        ):
            ids.append(f"evt_rawpoison{n:04d}{customer[-8:]}")
            client._recorder.append(
                (_raw, json.dumps({"type": "event", "id": ids[-1], "runId": raw_run.id,
                                   "eventType": "raw", **item}))
            )  # fmt: skip
        # and one that is not even JSON: the server refuses its whole batch (400); the
        # sender splits the batch until that record stands alone
        client._recorder.append((_raw, '{"type":"event","runId":'))
        good(-1)
    # a lone surrogate in an exception message is free text the SDK writes: it is cleaned,
    # not refused, so the failing run still ends
    try:
        with client.run("failing", customer_id=customer):
            good(-2)
            raise ValueError(b"f\xff".decode("utf-8", "surrogateescape"))
    except ValueError:
        pass
    report = client.flush(60)
    client.close()

    validation = [e for e in errors if isinstance(e, (DripValidationError, TypeError))]
    assert len(validation) == poison_at_call == 50
    delivery = [e for e in errors if isinstance(e, DripDeliveryError)]
    rejected = [e for e in delivery if e.item_id in ids]
    assert len(rejected) == 4, delivery  # each reported alone, with the server's reason
    refused = [e for e in delivery if e.code == "REFUSED"]
    assert len(refused) == 1 and refused[0].count == 1, delivery
    assert report.failed == 5 and report.pending == 0

    with Drip(account.secret_key, account.base_url) as reader:
        summary = reader.get_usage_summary(customer_id=customer, meter="poison.good")
        assert summary.meters[0].run_events == 5000 + 2  # every good record
        runs = reader.list_runs(customer_id=customer, limit=100).data
        assert len(runs) == 52
        statuses = sorted(r.status.value for r in runs)
        assert statuses.count("COMPLETED") == 51 and statuses.count("FAILED") == 1
        for r in runs:  # every run still reads, odd data or not
            assert reader.get_run(r.id).id == r.id
            reader.get_run_timeline(r.id)
