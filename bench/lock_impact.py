#!/usr/bin/env python3
"""Lock impact: insert latency into orders and trades at a fixed rate (pgbench -R) while
partition-archiver maintains the same tables (creating, detaching and archiving partitions in a
loop), against a baseline run without maintenance. Prints max and p99 latency of both.

    python3 bench/lock_impact.py --seconds 20 --rate 200

Starts its own PostgreSQL and LocalStack (infra/*.sh). Never a test.
"""
import argparse, glob, os, re, shlex, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

INSERT = """\\set uid random(1, 100000)
\\set oid random(1, 1000000000)
BEGIN;
INSERT INTO public.orders (user_id, symbol, side, type, status, price, quantity) VALUES (:uid, 'BTC-USD', 'buy', 'limit', 'new', 100, 1);
INSERT INTO public.trades (order_id, user_id, symbol, side, price, quantity) VALUES (:oid, :uid, 'BTC-USD', 'buy', 100, 1);
END;
"""


def sh(cmd, env, check=True, capture=False):
    r = subprocess.run(cmd, shell=True, env=env, cwd=ROOT, text=True,
                       stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None)
    if check and r.returncode != 0:
        sys.exit(f"failed: {cmd}\n{r.stdout or ''}{r.stderr or ''}")
    return r


def pgbench(env, seconds, rate, work):
    prefix = os.path.join(work, f"lat-{time.time_ns()}")
    script = os.path.join(work, "insert.sql")
    open(script, "w").write(INSERT)
    sh(f"pgbench -n -c 4 -j 2 -R {rate} -T {seconds} -f {script} --log --log-prefix={prefix} > /dev/null 2>&1", env)
    lat = []
    for f in glob.glob(prefix + "*"):
        for line in open(f):
            parts = line.split()
            if len(parts) >= 3:
                lat.append(int(parts[2]) / 1000.0)  # microseconds -> ms
    lat.sort()
    return lat


def summary(lat):
    if not lat:
        return "no transactions"
    p99 = lat[int(len(lat) * 0.99) - 1]
    return f"{len(lat)} tx, p50 {lat[len(lat) // 2]:.2f} ms, p99 {p99:.2f} ms, max {lat[-1]:.2f} ms"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--rate", type=int, default=200, help="transactions per second (each inserts one order and one trade)")
    ap.add_argument("--pause", type=float, default=1.0, help="seconds between maintain runs (0: back to back)")
    args = ap.parse_args()
    run_dir = tempfile.mkdtemp(prefix="pa-lock.")
    work = tempfile.mkdtemp(prefix="pa-lock-files.")
    env = dict(os.environ, PA_RUN_DIR=run_dir)
    env.pop("DATABASE_URL", None)
    binary = os.path.join(ROOT, "target/release/partition-archiver")
    sh("cargo build --release --locked --quiet", env)
    try:
        sh("bash infra/postgres.sh start && bash infra/localstack.sh start", env)
        for f in ("postgres.env", "localstack.env"):
            for line in open(os.path.join(run_dir, f)):
                m = re.match(r"export (\w+)='?([^']*)'?", line.strip())
                if m:
                    env[m.group(1)] = m.group(2)
        env.update(ARCHIVE_BUCKET="lock", PGSSLMODE="disable", METRICS="off", RUST_LOG="warn", LOCK_TIMEOUT_MS="200")
        sh(f"curl -sf -X PUT {env['AWS_ENDPOINT_URL']}/lock > /dev/null", env)
        sh(f"{binary} --output json migrate > /dev/null", env)
        # A year of history, 2000 rows a month, so every maintain has a month to archive.
        sh("""psql -X -q -c "INSERT INTO public.orders (user_id, symbol, side, type, status, price, quantity, created_at)
               SELECT g, 'ETH-USD', 'sell', 'limit', 'filled', 1, 1, now() - interval '12 months' + g * interval '4 minutes'
                 FROM generate_series(1, 130000) g" """, env)
        sh(f"{binary} --output json maintain > /dev/null", env)  # partitions for the history, nothing archived yet beyond retention
        base = pgbench(env, args.seconds, args.rate, work)
        print(f"baseline (no maintenance):      {summary(base)}")

        stop = threading.Event()
        runs = []
        def maintain_loop():
            month = 1
            while not stop.is_set():
                now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + month * 31 * 86400))
                t0 = time.perf_counter()
                r = sh(f"{binary} --output json maintain --now {now} > /dev/null", env, check=False)
                runs.append((time.perf_counter() - t0, r.returncode))
                month += 1
                stop.wait(args.pause)
        t = threading.Thread(target=maintain_loop)
        t.start()
        during = pgbench(env, args.seconds, args.rate, work)
        stop.set()
        t.join()
        print(f"during partition-archiver runs: {summary(during)}")
        ok = sum(1 for _, rc in runs if rc == 0)
        print(f"maintain runs during the window: {len(runs)} ({ok} ok), each creating a month ahead and archiving one past retention")
        if base and during:
            p99b, p99d = base[int(len(base) * 0.99) - 1], during[int(len(during) * 0.99) - 1]
            print(f"max insert latency {during[-1]:.1f} ms (target <= 250 ms: {'yes' if during[-1] <= 250 else 'NO'}); "
                  f"p99 ratio {p99d / p99b:.2f}x (target <= 1.5x: {'yes' if p99d <= 1.5 * p99b else 'NO'})")
    finally:
        sh("bash infra/localstack.sh stop; bash infra/postgres.sh stop", env, check=False)


if __name__ == "__main__":
    main()
