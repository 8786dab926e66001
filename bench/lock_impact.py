#!/usr/bin/env python3
"""Lock impact: insert latency into orders and trades at a fixed rate (pgbench -R) while
partition-archiver maintains the same tables (creating, detaching and archiving partitions in a
loop), against a baseline run without maintenance; then the same on an identical copy of the tables
managed by pg_partman's run_maintenance() (Debian's postgresql-15-partman, installed if missing).
Prints max and p99 latency of all four windows.

    python3 bench/lock_impact.py --seconds 20 --rate 200

Starts its own PostgreSQL and LocalStack (infra/*.sh). Never a test.
"""
import argparse, glob, os, shlex, sys, tempfile, threading, time

from common import BINARY as binary, pin_servers, sh, start_servers, stop_servers

INSERT = """\\set uid random(1, 100000)
\\set oid random(1, 1000000000)
BEGIN;
INSERT INTO {schema}.orders (user_id, symbol, side, type, status, price, quantity) VALUES (:uid, 'BTC-USD', 'buy', 'limit', 'new', 100, 1);
INSERT INTO {schema}.trades (order_id, user_id, symbol, side, price, quantity) VALUES (:oid, :uid, 'BTC-USD', 'buy', 100, 1);
END;
"""

# Two years of orders, ~11,000 a month.
HISTORY = """INSERT INTO {schema}.orders (user_id, symbol, side, type, status, price, quantity, created_at)
             SELECT g, 'ETH-USD', 'sell', 'limit', 'filled', 1, 1, now() - interval '24 months' + g * interval '4 minutes'
               FROM generate_series(1, 260000) g"""
HISTORY_MONTHS = 24

# The same two tables, managed by pg_partman 4.x: monthly, two months ahead, a default partition,
# partitions back to the start of the history.
PARTMAN_SETUP = """
CREATE SCHEMA IF NOT EXISTS partman;
CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman;
CREATE SCHEMA partman_copy;
CREATE TABLE partman_copy.orders (LIKE public.orders INCLUDING ALL) PARTITION BY RANGE (created_at);
CREATE TABLE partman_copy.trades (LIKE public.trades INCLUDING ALL) PARTITION BY RANGE (created_at);
SELECT partman.create_parent('partman_copy.orders', 'created_at', 'native', 'monthly', p_premake := 2,
                             p_start_partition := (now() - interval '24 months')::text);
SELECT partman.create_parent('partman_copy.trades', 'created_at', 'native', 'monthly', p_premake := 2,
                             p_start_partition := (now() - interval '24 months')::text);
UPDATE partman.part_config SET retention = '24 months', retention_keep_table = false;
"""


PGBENCH = "pgbench"


def pgbench(env, seconds, rate, work, schema="public"):
    prefix = os.path.join(work, f"lat-{time.time_ns()}")
    script = os.path.join(work, f"insert-{schema}.sql")
    open(script, "w").write(INSERT.format(schema=schema))
    sh(f"{PGBENCH} -n -c 4 -j 2 -R {rate} -T {seconds} -f {script} --log --log-prefix={prefix} > /dev/null 2>&1", env)
    lat = []
    for f in glob.glob(prefix + "*"):
        for line in open(f):
            parts = line.split()
            if len(parts) >= 3:
                lat.append(int(parts[2]) / 1000.0)  # microseconds -> ms
    lat.sort()
    return lat


def p99(lat):
    return lat[int(len(lat) * 0.99) - 1]


def row(name, lat):
    if not lat:
        return f"| {name} | 0 | | | |"
    return f"| {name} | {len(lat)} | {lat[len(lat) // 2]:.2f} ms | {p99(lat):.2f} ms | {lat[-1]:.2f} ms |"


def during(env, args, work, schema, one_run):
    """pgbench on `schema` while `one_run(i)` (a maintenance run) repeats, `--pause` apart."""
    stop = threading.Event()
    runs = []
    def loop():
        i = 1
        while not stop.is_set():
            t0 = time.perf_counter()
            rc = one_run(i)
            runs.append((time.perf_counter() - t0, rc))
            i += 1
            stop.wait(args.pause)
    t = threading.Thread(target=loop)
    t.start()
    lat = pgbench(env, args.seconds, args.rate, work, schema)
    stop.set()
    t.join()
    return lat, runs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--rate", type=int, default=200, help="transactions per second (each inserts one order and one trade)")
    ap.add_argument("--pause", type=float, default=1.0, help="seconds between maintain runs (0: back to back)")
    ap.add_argument("--no-default", action="store_true",
                    help="our tables without default partitions (create_default = false): DETACH CONCURRENTLY then")
    ap.add_argument("--pin", action="store_true",
                    help="CPU 0: PostgreSQL and pgbench; CPU 1: the archiver (or psql) and LocalStack. Models "
                         "production, where the archiver (Lambda) and S3 do not run on the database host")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="pa-lock-files.")
    env, run_dir = start_servers("pa-lock.", "lock", LOCK_TIMEOUT_MS="200")
    try:
        sh(f"{binary} --output json migrate > /dev/null", env)
        sh(f"psql -X -q -c {shlex.quote(HISTORY.format(schema='public'))}", env)
        # Keep the whole history: the first maintain creates its partitions (moving the rows out of
        # the default partition) and archives nothing.
        sh(f"psql -X -q -c 'UPDATE partition_archiver.part_config SET retention = {HISTORY_MONTHS}'", env)
        sh(f"{binary} --output json maintain > /dev/null", env)
        if args.no_default:
            sql = ["UPDATE partition_archiver.part_config SET create_default = false"]
            for t in ("orders", "trades"):
                sql += [f"ALTER TABLE public.{t} DETACH PARTITION public.{t}_default", f"DROP TABLE public.{t}_default"]
            sh("psql -X -q -v ON_ERROR_STOP=1 " + " ".join(f"-c {shlex.quote(q)}" for q in sql), env)
        if sh("ls /usr/share/postgresql/15/extension/pg_partman.control", env, check=False, capture=True).returncode != 0:
            sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15-partman > /dev/null", env)
        sh(f"psql -X -q -v ON_ERROR_STOP=1 -c {shlex.quote(PARTMAN_SETUP)}", env)
        sh(f"psql -X -q -c {shlex.quote(HISTORY.format(schema='partman_copy'))}", env)
        sh("psql -X -q -c 'VACUUM ANALYZE'", env)
        client = ""
        if args.pin:
            client = pin_servers(run_dir, env)
            global PGBENCH
            PGBENCH = "taskset -c 0 pgbench"

        base = pgbench(env, args.seconds, args.rate, work)
        # Both tools run against the real clock, with one more month ahead and one month less kept
        # each run, so every run creates one partition per table and removes the oldest month of
        # orders; neither ever touches the month the inserts go to. Ours archives what it removes.
        def shrink(i):
            return max(HISTORY_MONTHS - i, 2)
        def archiver_run(i):
            sql = f"UPDATE partition_archiver.part_config SET premake = {2 + i}, retention = {shrink(i)}"
            return sh(f"{client}psql -X -q -c {shlex.quote(sql)} && {client}{binary} --output json maintain > /dev/null",
                      env, check=False).returncode
        ours, our_runs = during(env, args, work, "public", archiver_run)

        partman_base = pgbench(env, args.seconds, args.rate, work, "partman_copy")
        def partman_run(i):
            sql = (f"UPDATE partman.part_config SET premake = {2 + i}, retention = '{shrink(i)} months'; "
                   "SELECT partman.run_maintenance()")
            return sh(f"{client}psql -X -q -v ON_ERROR_STOP=1 -c {shlex.quote(sql)} > /dev/null", env, check=False).returncode
        theirs, partman_runs = during(env, args, work, "partman_copy", partman_run)

        parts = "SELECT count(*) FROM pg_inherits WHERE inhparent = '{}'::regclass"
        for t in ("public.orders", "partman_copy.orders"):
            got = sh(f"psql -X -At -c \"{parts.format(t)}\"", env, capture=True).stdout.strip()
            print(f"{t}: {got} partitions at the end", file=sys.stderr)
        print(f"\n{args.rate} tx/s for {args.seconds} s per window, a maintenance run every {args.pause} s"
              f"{', pinned (CPU 0: PostgreSQL + pgbench; CPU 1: maintenance client + LocalStack)' if args.pin else ', unpinned'}"
              f"{'; our tables without default partitions' if args.no_default else ''}\n")
        print("| window | transactions | p50 | p99 | max |")
        print("|---|---:|---:|---:|---:|")
        print(row("baseline (public tables)", base))
        print(row(f"during {len(our_runs)} partition-archiver maintain runs ({sum(1 for _, rc in our_runs if rc == 0)} ok)", ours))
        print(row("baseline (pg_partman copy)", partman_base))
        print(row(f"during {len(partman_runs)} pg_partman run_maintenance() ({sum(1 for _, rc in partman_runs if rc == 0)} ok)", theirs))
        for name, b, d, runs in (("partition-archiver", base, ours, our_runs), ("pg_partman", partman_base, theirs, partman_runs)):
            if b and d:
                mean = sum(w for w, _ in runs) / max(len(runs), 1)
                print(f"\n{name}: max insert latency {d[-1]:.1f} ms (<= 250 ms: {'yes' if d[-1] <= 250 else 'NO'}); "
                      f"p99 {p99(d) / p99(b):.2f}x its baseline (<= 1.5x: {'yes' if p99(d) <= 1.5 * p99(b) else 'NO'}); "
                      f"mean run {mean * 1000:.0f} ms")
    finally:
        stop_servers(env)


if __name__ == "__main__":
    main()
