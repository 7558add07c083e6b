"""``drip._baggage``: drip's members of a W3C baggage header, within the spec's limits."""

from __future__ import annotations

from drip._baggage import MAX_BYTES, MAX_MEMBERS, merge, parse


def test_merge_keeps_within_w3c_limits() -> None:
    full = ",".join(f"k{i}=v" for i in range(MAX_MEMBERS))
    assert merge(full, {"run": "run_1"}) == full  # a 65th member would break the limit
    long = "k=" + "v" * (MAX_BYTES - 10)
    assert merge(long, {"run": "run_1", "customer": "cus_1"}) == long
    assert merge("drip.run=old, x=1", {"run": "run_2"}) == "x=1,drip.run=run_2"
    assert parse(merge(None, {"customer": "cus 42/é"})) == {"customer": "cus 42/é"}


def test_parse_takes_only_drips_members_and_skips_malformed_ones() -> None:
    header = "a=1, drip.run=run_1;prop=x ,drip.customer=cus%201,drip.parent=,junk,drip.x"
    assert parse(header) == {"run": "run_1", "customer": "cus 1"}
    assert parse(None) == {} and parse("") == {}
    assert parse("drip.run=run_1," + "k=" + "v" * MAX_BYTES) == {}  # oversized: ignored whole


def test_when_drips_members_do_not_fit_no_other_runs_members_travel() -> None:
    # headers forwarded from the request being served carry its caller's run: if the current
    # run cannot replace them (a limit), they are dropped, never sent on as if current
    full = ",".join(f"k{i}=v" for i in range(MAX_MEMBERS - 1))
    assert merge(full + ",drip.run=old", {"run": "run_1", "customer": "cus_1"}) == full
    assert merge("drip.run=old", {"run": "r" * 5000}) is None
    long = "k=" + "v" * (MAX_BYTES - 20)
    assert merge("drip.run=old," + long, {"run": "run_1", "customer": "cus_1"}) == long
