#!/usr/bin/env python3
"""The naive peer: the baseline podero-onboard is measured against.

The strongest script a competent engineer writes in an afternoon for a migration:
asyncio + aiohttp with a keep-alive connection pool, a fixed pool of workers (the
concurrency), a token-bucket limiter every request passes, PUT the user then POST the
building, and each result committed to SQLite in WAL mode with synchronous=NORMAL
(durable enough for a migration, no fsync per commit). `--commit-every 100` is the
variant that batches commits (a crash then loses up to 99 recorded outcomes, whose
buildings a re-run would create a second time). It reads the whole CSV into memory and
skips rows already in its SQLite file. No retries, no crash-safe intent, no validation:
it is only a yardstick for throughput, CPU and memory, never a tool to use.

Usage:
  naive_peer.py CSV --db FILE --base-url URL --org-id UUID
                [--concurrency 32] [--rate 1000000] [--commit-every 1]
Credentials from PODERO_CLIENT_ID / PODERO_CLIENT_SECRET. Prints one JSON line
{"rows", "done", "failed", "skipped", "requests", "seconds"} on stdout.
"""

import argparse
import asyncio
import base64
import csv
import json
import os
import sqlite3
import sys
import time

import aiohttp


class Limiter:
    """A token bucket: `rate` requests per second, bursts of at most `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = float(burst), time.monotonic()
        self.lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


async def token(session: aiohttp.ClientSession, base_url: str) -> str:
    pair = f"{os.environ['PODERO_CLIENT_ID']}:{os.environ['PODERO_CLIENT_SECRET']}"
    basic = base64.b64encode(pair.encode()).decode()
    async with session.post(
        f"{base_url}/oauth2/token/",
        json={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    ) as response:
        response.raise_for_status()
        return (await response.json())["access_token"]


def open_db(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS results (user_id TEXT, building_name TEXT,"
        " building_id TEXT, status TEXT, PRIMARY KEY (user_id, building_name))"
    )
    return db


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("csv")
    parser.add_argument("--db", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--org-id", required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=1_000_000)
    parser.add_argument("--commit-every", type=int, default=1)
    args = parser.parse_args()
    started = time.monotonic()

    with open(args.csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))

    db = open_db(args.db)
    done = {
        (u, b)
        for u, b in db.execute("SELECT user_id, building_name FROM results WHERE status = 'done'")
    }
    todo = iter([r for r in rows if (r["user_id"], r["building_name"]) not in done])
    skipped = len(rows) - sum(1 for r in rows if (r["user_id"], r["building_name"]) not in done)

    api = f"{args.base_url}/api/partners/v2.0/org/{args.org_id}"
    limiter = Limiter(args.rate, burst=max(1, args.concurrency))
    counts = {"done": 0, "failed": 0, "requests": 0}
    uncommitted = 0
    db.execute("BEGIN")

    def record(user: str, name: str, building_id, status: str) -> None:
        nonlocal uncommitted
        db.execute(
            "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?)",
            (user, name, building_id, status),
        )
        uncommitted += 1
        if uncommitted >= args.commit_every:
            db.execute("COMMIT")
            db.execute("BEGIN")
            uncommitted = 0
        counts[status] += 1

    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        bearer = {"Authorization": f"Bearer {await token(session, args.base_url)}"}

        async def call(method: str, url: str, body: dict):
            await limiter.acquire()
            counts["requests"] += 1
            async with session.request(method, url, json=body, headers=bearer) as response:
                response.raise_for_status()
                return await response.json()

        async def onboard(row: dict) -> None:
            user, name = row["user_id"], row["building_name"]
            try:
                await call("PUT", f"{api}/users/{user}",
                           {"external_user_id": row["external_user_id"]})
                building = await call("POST", f"{api}/users/{user}/buildings", {"name": name})
                building_id, status = building["id"], "done"
            except (aiohttp.ClientError, KeyError, ValueError):
                building_id, status = None, "failed"
            record(user, name, building_id, status)

        async def worker() -> None:
            for row in todo:
                await onboard(row)

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))

    db.execute("COMMIT")
    db.close()
    summary = {
        "rows": len(rows),
        "skipped": skipped,
        **counts,
        "seconds": round(time.monotonic() - started, 3),
    }
    print(json.dumps(summary))
    return 0 if counts["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
