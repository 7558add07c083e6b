"""Threads and executors: carry the run into worker threads with drip.context.

Run: DRIP_BASE_URL=local python examples/threads.py
"""

from __future__ import annotations

import threading

import drip
from drip.context import ContextThreadPoolExecutor, wrap


@drip.metered(meter="rows", quantity=lambda rows: len(rows), units="rows")
def load(chunk: int) -> list[int]:
    return list(range(chunk * 100, chunk * 100 + 100))


def main() -> None:
    customer = drip.drip.create_customer(external_customer_id="example-threads")
    with drip.run(workflow="batch-import", customer_id=customer.id) as run:
        with ContextThreadPoolExecutor(max_workers=4) as pool:  # submit()/map() carry the run
            loaded = sum(len(rows) for rows in pool.map(load, range(8)))
        worker = threading.Thread(target=wrap(load), args=(99,))  # a plain thread: wrap()
        worker.start()
        worker.join()
    drip.flush(timeout=10)
    details = drip.drip.get_run(run.id)
    print(f"loaded {loaded + 100} rows in {details.totals.event_count} metered calls")
    print(f"total quantity on the server: {details.totals.total_quantity}")


if __name__ == "__main__":
    main()
