#!/usr/bin/env python3
"""The naive peer: the baseline podero-onboard is measured against.

What a competent engineer writes in an afternoon: asyncio + aiohttp, a semaphore
for concurrency, PUT the user then POST the building, and commit each result to
SQLite (one transaction per row, Python's default journal, synchronous=FULL).
It reads the whole CSV into memory and skips rows already in its SQLite file.
No rate limit, no retries, no crash-safe intent, no validation: it is only a
yardstick for throughput and memory, never a tool to use.

Usage:
  naive_peer.py CSV --db FILE --base-url URL --org-id UUID [--concurrency 32]
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


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("csv")
    parser.add_argument("--db", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--org-id", required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    started = time.monotonic()

    with open(args.csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))

    db = sqlite3.connect(args.db)
    db.execute(
        "CREATE TABLE IF NOT EXISTS results (user_id TEXT, building_name TEXT,"
        " building_id TEXT, status TEXT, PRIMARY KEY (user_id, building_name))"
    )
    db.commit()
    done = {
        (u, b)
        for u, b in db.execute("SELECT user_id, building_name FROM results WHERE status = 'done'")
    }

    api = f"{args.base_url}/api/partners/v2.0/org/{args.org_id}"
    semaphore = asyncio.Semaphore(args.concurrency)
    counts = {"done": 0, "failed": 0, "requests": 0}

    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        bearer = {"Authorization": f"Bearer {await token(session, args.base_url)}"}

        async def onboard(row: dict) -> None:
            user, name = row["user_id"], row["building_name"]
            async with semaphore:
                try:
                    counts["requests"] += 1
                    async with session.put(
                        f"{api}/users/{user}",
                        json={"external_user_id": row["external_user_id"]},
                        headers=bearer,
                    ) as response:
                        response.raise_for_status()
                        await response.read()
                    counts["requests"] += 1
                    async with session.post(
                        f"{api}/users/{user}/buildings", json={"name": name}, headers=bearer
                    ) as response:
                        response.raise_for_status()
                        building_id = (await response.json())["id"]
                    status = "done"
                except (aiohttp.ClientError, KeyError, ValueError):
                    building_id, status = None, "failed"
                db.execute(
                    "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?)",
                    (user, name, building_id, status),
                )
                db.commit()
                counts[status] += 1

        todo = [r for r in rows if (r["user_id"], r["building_name"]) not in done]
        await asyncio.gather(*(onboard(row) for row in todo))

    db.close()
    summary = {
        "rows": len(rows),
        "skipped": len(rows) - len(todo),
        **counts,
        "seconds": round(time.monotonic() - started, 3),
    }
    print(json.dumps(summary))
    return 0 if counts["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
