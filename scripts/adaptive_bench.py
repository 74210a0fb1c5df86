#!/usr/bin/env python3
"""The adaptive-rate scenarios of the benchmark (issues 13 and 24), run by scripts/bench.sh.

Each scenario starts its own simulator (`podero-onboard sandbox --rate-limit R --burst 3`,
no request log) on a free loopback port, sizes the CSV so the run lasts about SECS at the
server's limit (two requests per row), runs the job with `--rate 4R --concurrency 32`,
and polls `GET /__sandbox/state?counts=1` every POLL seconds for the accepted and 429
answers so far. A limit-change scenario changes the limit with `PUT /__sandbox/faults`
CHANGE_AT seconds into the run.

The 429s-not-caused-by-the-rate scenarios (issue 24) run against a simulator with no rate
limit, with `--rate 30 --concurrency 8`: "spurious P" answers a share P of API requests
with 429 and `Retry-After: 1` (`--random-429 P`); "storm" answers every API request 429 for
STORM seconds from a third of the way into the run (`PUT /__sandbox/faults
{"storm_ms": ...}`), then nothing. Their goodput is compared with the ceiling that honouring
every pause allows, 1 / (1/30 + P) for a share P.

With --night, the compressed production night (the most expensive scenario, off by
default): 2,500 rows against a limit that moves (30/s, 15/s from 60 s, 40/s from 120 s,
burst 3), 1 % spurious 429s, 3 % 5xx, 2 % of created buildings answered by a dropped
connection, 20-s tokens, and the job (`--rate 80 --concurrency 16`) SIGKILLed at 40 s and
at 100 s and started again at once; bounded at 600 s. "allowed" is the time the limits need
for the requests a perfect job needs (a PUT and a POST per row, every token, one more per
5xx, per dropped POST and per spurious 429) at exactly the limit; the target is every row
exactly once within 1.3 x that, checked per row in the simulator's data (no building
missing, none doubled) and in the checkpoint (no row left `posting`). Progress per 20 s
(requests through vs allowed) is printed as it runs and in the table; each run's -v log is
kept in WORK/adaptive/night/stderrN.txt.

Figures per scenario:
  goodput      accepted requests (token requests included) / wall time of the run, as a
               share of the server's limit (of the final limit for a change);
  429 share    429 answers / all answers;
  all done     every row created (the --json summary) and the simulator holds exactly one
               building per row (no duplicate);
  rise         10 -> 20: seconds from the change until a 3-second window first reaches
               85 % of the new limit;
  fall         20 -> 10: seconds from the change until the 429 share over every later
               5-second window stays under 3 %;
  back         storm: seconds from the storm's end until a 3-second window first reaches
               25 req/s; rows failed (the --json summary) must be 0.

Usage: adaptive_bench.py --bin PATH --work DIR [--secs S] [--limits "5 10 50"]
                         [--changes "10:20 20:10"] [--spurious "0.01 0.03 0.1"]
                         [--storm 10] [--night] [--out results-adaptive.md]
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
FLAT_RATE = 30
FLAT_CONCURRENCY = 8
BACK_RATE = 25


def start_sandbox(binary, users, limit, log_path, extra=()):
    log = open(log_path, "w")
    limits = ["--rate-limit", str(limit), "--burst", str(BURST)] if limit else []
    proc = subprocess.Popen(
        [binary, "sandbox", "--port", "0", "--generate-users", str(users), "--no-request-log",
         *limits, *extra],
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
    put_faults(url, {"rate_limit": {"per_second": limit, "burst": BURST}})


def put_faults(url, faults):
    body = json.dumps(faults).encode()
    req = urllib.request.Request(f"{url}/__sandbox/faults", data=body, method="PUT",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()


def scenario(args, name, start, end, change_at):
    """Runs one token-bucket scenario; returns a dict of figures."""
    secs = args.secs
    rows = int((change_at * start + (secs - change_at) * end) / 2) if change_at else int(secs * start / 2)
    top = max(start, end)
    event = (change_at, lambda url: set_limit(url, end)) if change_at else None
    result, series = drive(args, name, rows, start, [], 4 * top, 32, event)
    result["limit"] = f"{start}" if not change_at else f"{start} → {end}"
    result["goodput_of_limit"] = result["goodput"] / end
    if change_at:
        result["goodput_of_limit"] = None
        if end > start:
            result["rise"] = time_to_rise(series, change_at, end)
        else:
            result["fall"] = time_to_fall(series, change_at)
    return result


def spurious(args, share):
    """No limit, a share of API requests answered 429 (Retry-After: 1)."""
    ceiling = 1 / (1 / FLAT_RATE + share)
    rows = int(args.secs * ceiling / 2)
    name = f"spurious {share * 100:g} %"
    result, _ = drive(args, name, rows, None, ["--random-429", str(share)], FLAT_RATE,
                      FLAT_CONCURRENCY, None)
    result["limit"] = f"none, {share * 100:g} % 429s"
    result["ceiling"] = ceiling
    result["goodput_of_limit"] = None
    return result


def storm(args, storm_secs):
    """No limit; every API request answered 429 for storm_secs from a third of the run."""
    rows = int(args.secs * FLAT_RATE / 2)
    at = args.secs / 3
    event = (at, lambda url: put_faults(url, {"storm_ms": int(storm_secs * 1000)}))
    result, series = drive(args, f"storm {storm_secs:g} s", rows, None, [], FLAT_RATE,
                           FLAT_CONCURRENCY, event)
    result["limit"] = f"none, all 429 for {storm_secs:g} s"
    result["goodput_of_limit"] = None
    started = result["event_at"] if result["event_at"] is not None else at
    result["back"] = time_to_reach(series, started + storm_secs, BACK_RATE)
    return result


def drive(args, name, rows, limit, sandbox_extra, rate, concurrency, event):
    """Runs the job over `rows` rows against a fresh simulator; `event` is (seconds, action)
    done once that far into the run. Returns (figures, series)."""
    work = os.path.join(args.work, "adaptive", re.sub(r"[^a-z0-9]+", "_", name.lower()))
    os.makedirs(work, exist_ok=True)
    csv_path = os.path.join(work, "rows.csv")
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gen_csv.py"), str(rows), csv_path],
                   check=True)
    checkpoint = os.path.join(work, "ckpt.sqlite")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(checkpoint + suffix):
            os.remove(checkpoint + suffix)
    sandbox, url = start_sandbox(args.bin, rows, limit, os.path.join(work, "sandbox.log"),
                                 sandbox_extra)
    event_at = None
    try:
        env = dict(os.environ, PODERO_CLIENT_ID="demo-client", PODERO_CLIENT_SECRET="demo-secret")
        for key in ("PODERO_TOKEN", "PODERO_BASE_URL", "PODERO_ORG_ID"):
            env.pop(key, None)
        print(f"adaptive bench: {name}: {rows} rows, --rate {rate} --concurrency {concurrency}",
              file=sys.stderr)
        began = time.time()
        job = subprocess.Popen(
            [args.bin, "run", csv_path, "--checkpoint", checkpoint, "--base-url", url,
             "--org-id", ORG_ID, "--rate", str(rate), "--concurrency", str(concurrency),
             "--json", "-q"],
            stdout=open(os.path.join(work, "summary.json"), "w"),
            stderr=open(os.path.join(work, "stderr.txt"), "w"), env=env)
        series = []  # (seconds since start, accepted, throttled)
        while job.poll() is None:
            now = time.time() - began
            if event and event_at is None and now >= event[0]:
                event[1](url)
                event_at = now
            ok, throttled, _ = counts(url)
            series.append((now, ok, throttled))
            if now > 4 * args.secs + 60:
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
        created, failed = summary["rows"]["created"], summary["rows"]["failed"]
    except (ValueError, KeyError, OSError):
        created, failed = -1, -1
    return {
        "scenario": name, "rows": rows, "rate": rate, "wall": wall, "goodput": ok / wall,
        "share": throttled / max(ok + throttled, 1), "exit": code, "failed": failed,
        "all_done": created == rows and final["buildings"] == rows,
        "duplicates": final["duplicate_buildings"], "throttled": throttled,
        "requests": ok + throttled, "event_at": event_at,
    }, series


NIGHT_ROWS = 2500
NIGHT_LIMITS = [(0, 30), (60, 15), (120, 40)]
NIGHT_KILLS = [40, 100]
NIGHT_RATE = 80
NIGHT_CONCURRENCY = 16
# The night stops here whatever happens (the limits allow about 180 s).
NIGHT_BOUND = 600
NIGHT_STEP = 20


def night_faults(limit):
    return {"rate_limit": {"per_second": limit, "burst": BURST}, "random_429": 0.01,
            "random_5xx": 0.03, "commit_then_drop": 0.02}


def limit_at(t):
    return [limit for start, limit in NIGHT_LIMITS if start <= t][-1]


def allowed_between(t0, t1):
    """Requests the moving limit lets through between t0 and t1 (seconds into the night)."""
    edges = sorted({t0, t1, *(s for s, _ in NIGHT_LIMITS if t0 < s < t1)})
    return sum((b - a) * limit_at(a) for a, b in zip(edges, edges[1:]))


def allowed_secs(requests):
    """Seconds the moving limit needs for `requests` sent at exactly the limit."""
    done = 0.0
    for i, (start, limit) in enumerate(NIGHT_LIMITS):
        end = NIGHT_LIMITS[i + 1][0] if i + 1 < len(NIGHT_LIMITS) else float("inf")
        can = (end - start) * limit
        if done + can >= requests:
            return start + (requests - done) / limit
        done += can
    return float("inf")


def night_needed(final):
    """Requests a perfect job needs: a PUT and a POST per row, every token the 20-s
    lifetime forces, and one more request per fault that forces one: a 5xx answer is
    retried, a dropped POST is verified, a spurious 429 (it spent a place in the server's
    bucket, estimated at 1 % of the API requests) is re-sent. Returns (needed, 5xx, drops)."""
    statuses = {int(k): v for k, v in final["statuses"].items()}
    server_errors = sum(v for k, v in statuses.items() if k >= 500)
    sent = sum(v for k, v in final["requests"].items() if k != "admin")
    drops = max(0, sent - sum(statuses.values()))
    base = 2 * NIGHT_ROWS + server_errors + drops
    spurious = round(0.01 * base)
    return base + spurious + final["tokens_issued"], server_errors, drops


def night_check(url, checkpoint, binary):
    """Exactly once, from the simulator's data: one building per row's user (missing,
    doubled), and from the checkpoint: no row left `posting` (an unknown outcome)."""
    with urllib.request.urlopen(f"{url}/__sandbox/state", timeout=60) as r:
        snap = json.load(r)
    per_user = {user: len(b) for user, b in snap["buildings"].items()}
    users = [f"5eed0000-0000-4000-8000-{i:012x}" for i in range(NIGHT_ROWS)]
    missing = sum(1 for u in users if per_user.get(u, 0) == 0)
    doubled = sum(per_user.get(u, 0) - 1 for u in users if per_user.get(u, 0) > 1)
    status = subprocess.run([binary, "status", "--checkpoint", checkpoint, "--json"],
                            capture_output=True, text=True)
    states = json.loads(status.stdout)["rows_by_state"] if status.returncode == 0 else {}
    return missing, doubled, states


def night_progress(series, t0, t1, starts):
    """One progress line for the window [t0, t1]; `starts` are the times runs started."""
    a = min(series, key=lambda s: abs(s[0] - t0))
    b = min(series, key=lambda s: abs(s[0] - t1))
    through, throttled = b[1] - a[1], b[2] - a[2]
    allowed = allowed_between(a[0], b[0])
    runs = [i + 1 for i, at in enumerate(starts) if at < t1 and (i + 1 == len(starts) or starts[i + 1] > t0)]
    line = (f"| {t0:.0f}–{t1:.0f} s | {limit_at(t0)}/s | {through} | {allowed:.0f} | "
            f"{through / max(allowed, 1) * 100:.0f} % | {throttled} | "
            f"{', '.join(map(str, runs))} |")
    print(f"adaptive bench: night {line}", file=sys.stderr)
    return line


def night(args):
    """The compressed production night: moving limit, spurious 429s, 5xx, drops, short
    tokens, two SIGKILLs with restarts. Bounded by NIGHT_BOUND seconds."""
    work = os.path.join(args.work, "adaptive", "night")
    os.makedirs(work, exist_ok=True)
    csv_path = os.path.join(work, "rows.csv")
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gen_csv.py"),
                    str(NIGHT_ROWS), csv_path], check=True)
    checkpoint = os.path.join(work, "ckpt.sqlite")
    for suffix in ("", "-wal", "-shm", ".lock"):
        if os.path.exists(checkpoint + suffix):
            os.remove(checkpoint + suffix)
    extra = ["--random-429", "0.01", "--random-5xx", "0.03", "--commit-then-drop", "0.02",
             "--token-lifetime", "20"]
    sandbox, url = start_sandbox(args.bin, NIGHT_ROWS, NIGHT_LIMITS[0][1],
                                 os.path.join(work, "sandbox.log"), extra)
    env = dict(os.environ, PODERO_CLIENT_ID="demo-client", PODERO_CLIENT_SECRET="demo-secret")
    for key in ("PODERO_TOKEN", "PODERO_BASE_URL", "PODERO_ORG_ID"):
        env.pop(key, None)
    # -v: the job's debug log (every request, each 429's verdict, the rate it starts at)
    # is kept per run in stderrN.txt for diagnosis.
    cmd = [args.bin, "run", csv_path, "--checkpoint", checkpoint, "--base-url", url,
           "--org-id", ORG_ID, "--rate", str(NIGHT_RATE), "--concurrency",
           str(NIGHT_CONCURRENCY), "--json", "-v"]
    print(f"adaptive bench: night: {NIGHT_ROWS} rows, limits {NIGHT_LIMITS}, kills at "
          f"{NIGHT_KILLS} s, bound {NIGHT_BOUND} s", file=sys.stderr)
    limits, kills, runs, code = list(NIGHT_LIMITS[1:]), list(NIGHT_KILLS), 0, None
    series, progress, bounded, starts = [(0.0, 0, 0)], [], False, []
    next_step = NIGHT_STEP
    began = time.time()
    try:
        while True:
            runs += 1
            starts.append(time.time() - began)
            job = subprocess.Popen(cmd, stdout=open(os.path.join(work, f"summary{runs}.json"), "w"),
                                   stderr=open(os.path.join(work, f"stderr{runs}.txt"), "w"), env=env)
            killed = False
            while job.poll() is None:
                now = time.time() - began
                if limits and now >= limits[0][0]:
                    put_faults(url, night_faults(limits.pop(0)[1]))
                if kills and now >= kills[0]:
                    kills.pop(0)
                    job.kill()
                    killed = True
                    break
                if now > NIGHT_BOUND:
                    job.kill()
                    bounded = True
                    break
                ok, throttled, _ = counts(url)
                series.append((now, ok, throttled))
                if now >= next_step:
                    progress.append(night_progress(series, next_step - NIGHT_STEP, next_step,
                                                   starts))
                    next_step += NIGHT_STEP
                time.sleep(0.25)
            code = job.wait()
            if not killed or bounded:
                break
        wall = time.time() - began
        ok, throttled, final = counts(url)
        series.append((wall, ok, throttled))
        if wall > next_step - NIGHT_STEP + 1:
            progress.append(night_progress(series, next_step - NIGHT_STEP, wall, starts))
        missing, doubled, states = night_check(url, checkpoint, args.bin)
    finally:
        sandbox.kill()
        sandbox.wait()
    with open(os.path.join(work, "series.tsv"), "w") as out:
        out.write("seconds\taccepted\tthrottled\n")
        out.writelines(f"{t:.2f}\t{a}\t{b}\n" for t, a, b in series)
    needed, server_errors, drops = night_needed(final)
    requests = ok + throttled
    unresolved = sum(v for k, v in states.items() if k != "done")
    print(f"adaptive bench: night: {wall:.0f} s, {runs} runs, exit {code}, {missing} missing, "
          f"{doubled} doubled, checkpoint {states}, {needed} requests needed "
          f"({server_errors} 5xx, {drops} drops, {final['tokens_issued']} tokens)",
          file=sys.stderr)
    return {
        "scenario": "night", "rows": NIGHT_ROWS, "wall": wall, "requests": requests,
        "goodput": ok / wall, "share": throttled / max(requests, 1), "throttled": throttled,
        "exit": code, "runs": runs, "failed": missing, "goodput_of_limit": None,
        "all_done": missing == 0 and unresolved == 0 and not bounded,
        "duplicates": max(doubled, final["duplicate_buildings"]) + final["duplicate_external_ids"],
        "allowed": allowed_secs(needed), "needed": needed, "bounded": bounded,
        "allowed_made": allowed_secs(ok), "progress": progress, "states": states,
    }


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


def time_to_reach(series, since, rate):
    """Seconds after `since` until a 3-second window first reaches `rate` accepted/s."""
    for (t, _, _) in series:
        if t < since:
            continue
        ok, _, span = window(series, t, t + 3)
        if span >= 2.5 and ok / span >= rate:
            return t + span - since
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
    parser.add_argument("--spurious", default="0.01 0.03 0.1")
    parser.add_argument("--storm", type=float, default=10)
    parser.add_argument("--night", action="store_true")
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
    for share in args.spurious.split():
        results.append(spurious(args, float(share)))
    if args.storm > 0:
        results.append(storm(args, args.storm))
    if args.night:
        results.append(night(args))
    load_after = open("/proc/loadavg").read().split()[:3]

    lines = []
    p = lines.append
    p(f"### Adaptive rate — {began.strftime('%Y-%m-%d %H:%M')}")
    p("")
    p(f"Machine: {machine()}; load average {' '.join(load_before)} before, "
      f"{' '.join(load_after)} after. Simulator `--rate-limit R --burst {BURST}` "
      f"(whole-second `Retry-After`), job `--rate 4R --concurrency 32`, about "
      f"{args.secs:.0f} s per scenario; a change happens {args.secs / 3:.0f} s in. "
      f"Spurious and storm scenarios: no limit, `--rate {FLAT_RATE} --concurrency "
      f"{FLAT_CONCURRENCY}`; a storm starts {args.secs / 3:.0f} s in.")
    p("")
    p("| scenario | rows | wall s | requests | goodput req/s | goodput % of limit | 429s | "
      "all done, no duplicate | limit change / ceiling / recovery |")
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
        if "ceiling" in r:
            change = f"ceiling {r['ceiling']:.1f} req/s"
        if "allowed" in r:
            change = (f"{r['runs']} runs (2 SIGKILLs); {r['needed']} requests needed, which the "
                      f"limits allow in {r['allowed']:.0f} s: {r['wall'] / r['allowed']:.2f}×"
                      + (f"; stopped at the {NIGHT_BOUND}-s bound" if r["bounded"] else ""))
        if "back" in r:
            change = (f"≥ {BACK_RATE} req/s {r['back']:.1f} s after the storm"
                      if r["back"] is not None else f"never back to {BACK_RATE} req/s")
        done = "yes" if r["all_done"] and r["duplicates"] == 0 and r["exit"] == 0 else \
            f"**no** (exit {r['exit']}, {r['failed']} failed, {r['duplicates']} duplicates)"
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
    least = {0.03: 10, 0.1: 5}
    for r in results:
        if "ceiling" in r:
            share = round(1 / r["ceiling"] - 1 / FLAT_RATE, 4)
            target = least.get(share)
            verdict = ("no target" if target is None else
                       ("met" if r["goodput"] >= target and r["all_done"] else "**MISSED**"))
            p(f"- {r['scenario']}: ≥ {target if target else '—'} req/s (ceiling {r['ceiling']:.1f}), "
              f"all done: {r['goodput']:.1f} req/s — {verdict}")
        if "back" in r:
            ok = r["back"] is not None and r["back"] <= 15 and r["failed"] == 0 and r["all_done"]
            back = f"{r['back']:.1f} s" if r["back"] is not None else "never"
            p(f"- {r['scenario']}: ≥ {BACK_RATE} req/s within 15 s after it, no row failed: "
              f"{back}, {r['failed']} failed — {'met' if ok else '**MISSED**'}")
    for r in results:
        if "allowed" in r:
            ok = r["all_done"] and r["duplicates"] == 0 and r["wall"] <= 1.3 * r["allowed"]
            p(f"- night: every row exactly once within 1.3 × the {r['allowed']:.0f} s the limits "
              f"allow: {r['wall']:.0f} s ({r['wall'] / r['allowed']:.2f}×), {r['failed']} rows "
              f"without their building, {r['duplicates']} duplicates, checkpoint "
              f"{json.dumps(r['states'])} — {'met' if ok else '**MISSED**'}")
            p("")
            p(f"Night, per {NIGHT_STEP} s (requests through = answers other than 429, token "
              "requests included; allowed = what the limit lets through in that window):")
            p("")
            p("| window | limit | through | allowed | share | 429s | run |")
            p("|---|---:|---:|---:|---:|---:|---:|")
            lines.extend(r["progress"])
    text = "\n".join(lines) + "\n"
    if args.out:
        open(args.out, "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
