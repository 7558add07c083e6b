"""with drip.run(...): a run per job, nested events, a child run, FAILED on exceptions.

Run: DRIP_BASE_URL=local python examples/run_block.py
"""

from __future__ import annotations

import drip
from drip._render import timeline_tree


@drip.metered(meter="pages", event_type="tool.fetch")
def fetch(url: str) -> str:
    return f"<html>{url}</html>"


@drip.metered(meter="agent_steps", event_type="agent.step")
def research(topic: str) -> list[str]:
    return [fetch(f"https://example.org/{topic}/{i}") for i in range(2)]  # child events


def main() -> None:
    client = drip.drip
    customer = client.create_customer(external_customer_id="example-run-block")
    with drip.run(workflow="research-agent", customer_id=customer.id) as run:
        research("metering")
        with drip.run(workflow="report-writer") as child:  # child run, same customer
            child.event("report.sent", 1, units="reports")
        run.event("done", metadata={"topics": 1})
    try:
        with drip.run(workflow="research-agent", customer_id=customer.id) as failed:
            raise ValueError("the source was unreachable")
    except ValueError:
        pass  # the run ended FAILED with error_code "ValueError"; the exception is yours
    drip.flush(timeout=10)
    for run_id in (run.id, child.id, failed.id):
        print(timeline_tree(client.get_run_timeline(run_id)))


if __name__ == "__main__":
    main()
