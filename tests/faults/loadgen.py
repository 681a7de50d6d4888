"""HTTP load for the fault tests, run as its own process so it does not share the event loop
of the host under test::

    python -m tests.faults.loadgen URL SECONDS CONNECTIONS

Each of CONNECTIONS workers sends GET URL back to back on its own keep-alive connection for
SECONDS. Prints one JSON document: every request as ``[start, end, status, counter]`` —
``time.monotonic()`` seconds (the same clock as the test's on Linux), the HTTP status (0 for a
connection error) and the ``counter`` of a kvcounter reply (None otherwise).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp


async def main(url: str, seconds: float, conns: int) -> None:
    records: list[list] = []
    end = time.monotonic() + seconds

    async def worker() -> None:
        connector = aiohttp.TCPConnector(limit=1, force_close=False)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            while time.monotonic() < end:
                started = time.monotonic()
                status, counter = 0, None
                try:
                    async with session.get(url) as resp:
                        body = await resp.read()
                        status = resp.status
                        if status == 200:
                            counter = json.loads(body)["counter"]
                except (aiohttp.ClientError, OSError, ValueError, KeyError):
                    await asyncio.sleep(0.01)
                records.append([started, time.monotonic(), status, counter])

    print("started", flush=True)
    await asyncio.gather(*(worker() for _ in range(conns)))
    print(json.dumps(records), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
