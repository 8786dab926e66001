"""What the benchmark scripts share: running commands, starting and stopping the project's own
PostgreSQL and LocalStack (infra/*.sh), and the --pin CPU layout."""
import os, re, shlex, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target/release/partition-archiver")


def sh(cmd, env=None, check=True, capture=False):
    r = subprocess.run(cmd, shell=True, env=env, cwd=ROOT, text=True,
                       stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None)
    if check and r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {cmd}\n{r.stdout or ''}{r.stderr or ''}")
    return r


def start_servers(prefix, bucket, **settings):
    """Builds the release binary, starts PostgreSQL and LocalStack in a new run directory, creates
    `bucket`, and returns (env, run_dir): the environment every command of the benchmark runs in."""
    sh("cargo build --release --locked --quiet")
    run_dir = tempfile.mkdtemp(prefix=prefix)
    env = dict(os.environ, PA_RUN_DIR=run_dir)
    for k in ("DATABASE_URL", "AWS_ENDPOINT_URL"):
        env.pop(k, None)
    sh("bash infra/postgres.sh start && bash infra/localstack.sh start", env=env)
    for f in ("postgres.env", "localstack.env"):
        for line in open(os.path.join(run_dir, f)):
            m = re.match(r"export (\w+)='?([^']*)'?", line.strip())
            if m:
                env[m.group(1)] = m.group(2)
    env.update(ARCHIVE_BUCKET=bucket, PGSSLMODE="disable", METRICS="off", RUST_LOG="warn", **settings)
    sh(f"curl -sf -X PUT {env['AWS_ENDPOINT_URL']}/{bucket} > /dev/null", env=env)
    return env, run_dir


def stop_servers(env):
    sh("bash infra/localstack.sh stop; bash infra/postgres.sh stop", env=env, check=False)


def pin_servers(run_dir, env):
    """--pin: PostgreSQL on CPU 0 (backends forked later inherit the postmaster's affinity),
    LocalStack on CPU 1. Returns the prefix that puts a client command on CPU 1."""
    pg_dir = open(os.path.join(run_dir, "postgres.dir")).read().strip()
    postmaster = open(os.path.join(pg_dir, "data", "postmaster.pid")).readline().strip()
    localstack = open(os.path.join(run_dir, "localstack.pid")).read().strip()
    sh(f"for p in {postmaster} $(pgrep -P {postmaster}); do taskset -a -p -c 0 $p > /dev/null; done", env=env)
    sh(f"for p in $(pgrep -g {localstack}); do taskset -a -p -c 1 $p > /dev/null; done", env=env)
    return "taskset -c 1 "


PSQL = "psql -X -q -v ON_ERROR_STOP=1"

# A month of `trades` with realistic distributions: 8 symbols, log-normal prices, random
# quantities and fees, timestamps spread over the month.
TRADES = """INSERT INTO public.trades (order_id, user_id, symbol, side, price, quantity, fee, created_at)
         SELECT (random() * 1e9)::bigint, (random() * 100000)::bigint,
                (ARRAY['BTC-USD','ETH-USD','SOL-USD','ADA-USD','XRP-USD','DOGE-USD','AVAX-USD','DOT-USD'])[1 + (random() * 7)::int],
                CASE WHEN random() < 0.5 THEN 'buy' ELSE 'sell' END,
                round((exp(random() * 10) + 0.01)::numeric, 8), round((random() * 10 + 0.0001)::numeric, 8),
                round((random() * 0.01)::numeric, 10),
                timestamptz '{start}' + (random() * interval '30 days')
           FROM generate_series(1, {n})"""


def fill_trades(env, month, n):
    """Inserts `n` trades into the partition of `month` ('2026-03') and VACUUM ANALYZEs it."""
    sh(f"{PSQL} -c {shlex.quote(TRADES.format(start=month + '-01 00:00+00', n=n))}", env=env)
    sh(f"{PSQL} -c 'VACUUM ANALYZE public.trades_{month.replace('-', '_')}'", env=env)


def reattach_march(env):
    """Puts trades_2026_03, moved to bench_hist by an archive, back as a partition with no manifest
    row, ready to be archived again."""
    sh(f"""{PSQL} -c "SELECT partition_archiver.unfreeze('bench_hist.trades_2026_03')" \
           -c "ALTER TABLE bench_hist.trades_2026_03 SET SCHEMA public" \
           -c "ALTER TABLE public.trades ATTACH PARTITION public.trades_2026_03 FOR VALUES FROM ('2026-03-01 00:00+00') TO ('2026-04-01 00:00+00')" \
           -c "DELETE FROM partition_archiver.archive_manifest WHERE partition_name = 'trades_2026_03'" """, env=env)


def print_checks(checks, big=None, big_factor=0, base_rss=0, note=""):
    """Prints the targets table: each (target, measured, met) row, then, when a partition
    `big_factor` times larger was archived (`big`: rows, seconds, peak RSS KiB), whether its peak
    RSS stayed within 1.1x of `base_rss`."""
    if big:
        n, w, r = big
        checks = checks + [(f"{big_factor}x partition RSS <= 1.1x the 1x RSS{note}",
                            f"{r / 1024:.0f} MiB vs {base_rss / 1024:.0f} MiB ({n:,} rows in {w:.1f} s)", r <= 1.1 * base_rss)]
    for name, got, ok in checks:
        print(f"| {name} | {got} | {'yes' if ok else 'NO'} |")
