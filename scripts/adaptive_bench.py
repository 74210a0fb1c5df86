#!/usr/bin/env python3
"""The adaptive-rate scenarios of the benchmark (issue 13), run by scripts/bench.sh.

Each scenario starts its own simulator (`podero-onboard sandbox --rate-limit R --burst 3`,
no request log) on a free loopback port, sizes the CSV so the run lasts about SECS at the
server's limit (two requests per row), runs the job with `--rate 4R --concurrency 32`,
and polls `GET /__sandbox/state?counts=1` every POLL seconds for the accepted and 429
answers so far. A limit-change scenario changes the limit with `PUT /__sandbox/faults`
CHANGE_AT seconds into the run.

Figures per scenario:
  goodput      accepted requests (token requests included) / wall time of the run, as a
               share of the server's limit (of the final limit for a change);
  429 share    429 answers / all answers;
  all done     every row created (the --json summary) and the simulator holds exactly one
               building per row (no duplicate);
  rise         10 -> 20: seconds from the change until a 3-second window first reaches
               85 % of the new limit;
  fall         20 -> 10: seconds from the change until the 429 share over every later
               5-second window stays under 3 %.

Usage: adaptive_bench.py --bin PATH --work DIR [--secs S] [--limits "5 10 50"]
                         [--changes "10:20 20:10"] [--out results-adaptive.md]
"""

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

ORG_ID = "6f726700-0000-4000-8000-000000000001"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POLL = 0.5
BURST = 3


def start_sandbox(binary, users, limit, log_path):
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [binary, "sandbox", "--port", "0", "--generate-users", str(users),
         "--rate-limit", str(limit), "--burst", str(BURST), "--no-request-log"],
        stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        match = re.search(r"http://127\.0\.0\.1:\d+", open(log_path).read())
        if match:
            return proc, match.group(0)
        if proc.poll() is not None:
            sys.exit(f"adaptive bench: simulator exited: {open(log_path).read()}")
        time.sleep(0.1)
    proc.kill()
    sys.exit("adaptive bench: simulator did not start")


def counts(url):
    with urllib.request.urlopen(f"{url}/__sandbox/state?counts=1", timeout=10) as r:
        c = json.load(r)
    statuses = {int(k): v for k, v in c["statuses"].items()}
    throttled = statuses.get(429, 0)
    return sum(statuses.values()) - throttled, throttled, c


def set_limit(url, limit):
    body = json.dumps({"rate_limit": {"per_second": limit, "burst": BURST}}).encode()
    req = urllib.request.Request(f"{url}/__sandbox/faults", data=body, method="PUT",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()


def scenario(args, name, start, end, change_at):
    """Runs one scenario; returns a dict of figures."""
    secs = args.secs
    rows = int((change_at * start + (secs - change_at) * end) / 2) if change_at else int(secs * start / 2)
    top = max(start, end)
    work = os.path.join(args.work, "adaptive", name.replace(" ", "_").replace(">", ""))
    os.makedirs(work, exist_ok=True)
    csv_path = os.path.join(work, "rows.csv")
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gen_csv.py"), str(rows), csv_path],
                   check=True)
    checkpoint = os.path.join(work, "ckpt.sqlite")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(checkpoint + suffix):
            os.remove(checkpoint + suffix)
    sandbox, url = start_sandbox(args.bin, rows, start, os.path.join(work, "sandbox.log"))
    try:
        env = dict(os.environ, PODERO_CLIENT_ID="demo-client", PODERO_CLIENT_SECRET="demo-secret")
        for key in ("PODERO_TOKEN", "PODERO_BASE_URL", "PODERO_ORG_ID"):
            env.pop(key, None)
        print(f"adaptive bench: {name}: {rows} rows, limit {start}/s"
              + (f" -> {end}/s at {change_at} s" if change_at else "") + f", --rate {4 * top}",
              file=sys.stderr)
        began = time.time()
        job = subprocess.Popen(
            [args.bin, "run", csv_path, "--checkpoint", checkpoint, "--base-url", url,
             "--org-id", ORG_ID, "--rate", str(4 * top), "--concurrency", "32", "--json", "-q"],
            stdout=open(os.path.join(work, "summary.json"), "w"),
            stderr=open(os.path.join(work, "stderr.txt"), "w"), env=env)
        series = []  # (seconds since start, accepted, throttled)
        changed = not change_at
        while job.poll() is None:
            now = time.time() - began
            if not changed and now >= change_at:
                set_limit(url, end)
                changed = True
            ok, throttled, _ = counts(url)
            series.append((now, ok, throttled))
            if now > 4 * secs + 60:
                job.kill()
                break
            time.sleep(POLL)
        wall = time.time() - began
        code = job.wait()
        ok, throttled, final = counts(url)
        series.append((wall, ok, throttled))
        with open(os.path.join(work, "series.tsv"), "w") as out:
            out.write("seconds\taccepted\tthrottled\n")
            out.writelines(f"{t:.2f}\t{a}\t{b}\n" for t, a, b in series)
    finally:
        sandbox.kill()
        sandbox.wait()
    try:
        summary = json.load(open(os.path.join(work, "summary.json")))
        created = summary["rows"]["created"]
    except (ValueError, KeyError, OSError):
        created = -1
    result = {
        "scenario": name, "rows": rows, "limit": f"{start}" if not change_at else f"{start} → {end}",
        "rate": 4 * top, "wall": wall, "goodput": ok / wall, "share": throttled / max(ok + throttled, 1),
        "goodput_of_limit": ok / wall / (end if not change_at else end), "exit": code,
        "all_done": created == rows and final["buildings"] == rows,
        "duplicates": final["duplicate_buildings"], "throttled": throttled, "requests": ok + throttled,
    }
    if change_at:
        result["goodput_of_limit"] = None
        if end > start:
            result["rise"] = time_to_rise(series, change_at, end)
        else:
            result["fall"] = time_to_fall(series, change_at)
    return result


def window(series, t0, t1):
    """(accepted, throttled) between the polls nearest t0 and t1."""
    def at(t):
        best = min(series, key=lambda s: abs(s[0] - t))
        return best
    a, b = at(t0), at(t1)
    return b[1] - a[1], b[2] - a[2], b[0] - a[0]


def time_to_rise(series, change_at, limit):
    for (t, _, _) in series:
        if t < change_at:
            continue
        ok, _, span = window(series, t, t + 3)
        if span >= 2.5 and ok / span >= 0.85 * limit:
            return t + span - change_at
    return None


def time_to_fall(series, change_at):
    end = series[-1][0]
    candidates = [t for (t, _, _) in series if t >= change_at]
    for t in candidates:
        good = True
        s = t
        while s + 5 <= end:
            ok, throttled, _ = window(series, s, s + 5)
            if throttled / max(ok + throttled, 1) >= 0.03:
                good = False
                break
            s += POLL
        if good:
            return t - change_at
    return None


def machine():
    model = "unknown CPU"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores ({model})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--secs", type=float, default=60)
    parser.add_argument("--limits", default="5 10 50")
    parser.add_argument("--changes", default="10:20 20:10")
    parser.add_argument("--out")
    args = parser.parse_args()
    load_before = open("/proc/loadavg").read().split()[:3]
    began = datetime.datetime.now()
    results = []
    for limit in args.limits.split():
        limit = int(limit) if float(limit).is_integer() else float(limit)
        results.append(scenario(args, f"limit {limit}", limit, limit, 0))
    for change in args.changes.split():
        a, b = (int(x) for x in change.split(":"))
        results.append(scenario(args, f"limit {a}>{b}", a, b, args.secs / 3))
    load_after = open("/proc/loadavg").read().split()[:3]

    lines = []
    p = lines.append
    p(f"### Adaptive rate — {began.strftime('%Y-%m-%d %H:%M')}")
    p("")
    p(f"Machine: {machine()}; load average {' '.join(load_before)} before, "
      f"{' '.join(load_after)} after. Simulator `--rate-limit R --burst {BURST}` "
      f"(whole-second `Retry-After`), job `--rate 4R --concurrency 32`, about "
      f"{args.secs:.0f} s per scenario; a change happens {args.secs / 3:.0f} s in.")
    p("")
    p("| scenario | rows | wall s | requests | goodput req/s | goodput % of limit | 429s | "
      "all done, no duplicate | limit change |")
    p("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for r in results:
        pct = f"{r['goodput_of_limit'] * 100:.1f} %" if r["goodput_of_limit"] is not None else "—"
        change = "—"
        if "rise" in r:
            change = (f"≥ 85 % of the new limit {r['rise']:.1f} s after the change"
                      if r["rise"] is not None else "never reached 85 % of the new limit")
        if "fall" in r:
            change = (f"429s < 3 % in every 5-s window from {r['fall']:.1f} s after the change"
                      if r["fall"] is not None else "429s never stayed under 3 %")
        done = "yes" if r["all_done"] and r["duplicates"] == 0 and r["exit"] == 0 else \
            f"**no** (exit {r['exit']}, {r['duplicates']} duplicates)"
        p(f"| {r['scenario'].replace('>', ' → ')} | {r['rows']} | {r['wall']:.1f} | {r['requests']} "
          f"| {r['goodput']:.1f} | {pct} | {r['share'] * 100:.2f} % ({r['throttled']}) | {done} | {change} |")
    p("")
    p("Targets:")
    for r in results:
        if r["goodput_of_limit"] is None:
            continue
        ok = r["goodput_of_limit"] >= 0.9 and r["share"] <= 0.03 and r["all_done"] and r["duplicates"] == 0
        p(f"- {r['scenario']}: goodput ≥ 90 %, 429s ≤ 3 %, all done, no duplicate: "
          f"{r['goodput_of_limit'] * 100:.1f} %, {r['share'] * 100:.2f} % — {'met' if ok else '**MISSED**'}")
    for r in results:
        if "rise" in r:
            ok = r["rise"] is not None and r["rise"] <= 30
            p(f"- {r['scenario'].replace('>', ' → ')}: ≥ 85 % of the new limit within 30 s: "
              f"{'%.1f s' % r['rise'] if r['rise'] is not None else 'never'} — {'met' if ok else '**MISSED**'}")
        if "fall" in r:
            ok = r["fall"] is not None and r["fall"] <= 15
            p(f"- {r['scenario'].replace('>', ' → ')}: 429s under 3 % within 15 s: "
              f"{'%.1f s' % r['fall'] if r['fall'] is not None else 'never'} — {'met' if ok else '**MISSED**'}")
    text = "\n".join(lines) + "\n"
    if args.out:
        open(args.out, "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
