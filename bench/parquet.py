#!/usr/bin/env python3
"""Parquet archive benchmark (issue 12), on one `trades` month, same run, same machine: the Parquet
archive's wall time with one and two streams against a raw single `COPY csv`, its size against the
CSV.zst archive, its restore against a raw `COPY FROM`, peak RSS at 1x and Nx rows, and a DuckDB
aggregate (sum(quantity), count(*) by symbol and day) over the archived month downloaded from S3,
in CSV.zst and in Parquet.

    python3 bench/parquet.py                                    # quick: 500k rows
    python3 bench/parquet.py --rows 5000000 --big-factor 10     # the figures in BENCHMARKS.md

Starts its own PostgreSQL and LocalStack (infra/*.sh), installs DuckDB's wheel (infra/duckdb.sh),
and stops the servers at the end. Uses the release binary. PostgreSQL, LocalStack and the archiver
share this machine's cores: say so when quoting the figures. Never a test: figures go to stdout.
"""
import argparse, json, os, re, statistics, subprocess, sys, tempfile, time

from chunks import measure_archives, measurer, prepare_march, print_results, timed
from common import BINARY, PSQL, fill_trades, print_checks, reattach_march, sh, start_servers, stop_servers

DUCKDB_QUERY = """SELECT symbol, date_trunc('day', created_at) AS day, sum(quantity) AS quantity, count(*) AS trades
                    FROM {source} GROUP BY ALL ORDER BY ALL"""


def keys_under(env, prefix):
    """Object keys under `prefix` (LocalStack's ListObjectsV2, unsigned)."""
    out = sh(f"curl -sf '{env['AWS_ENDPOINT_URL']}/{env['ARCHIVE_BUCKET']}?list-type=2&prefix={prefix}'", env=env, capture=True).stdout
    return re.findall(r"<Key>(.*?)</Key>", out)


def download(env, prefix, suffix, into):
    os.makedirs(into, exist_ok=True)
    paths = []
    for key in keys_under(env, prefix):
        if key.endswith(suffix):
            path = os.path.join(into, os.path.basename(key))
            sh(f"curl -sf '{env['AWS_ENDPOINT_URL']}/{env['ARCHIVE_BUCKET']}/{key}' -o {path}", env=env)
            paths.append(path)
    return paths


def duckdb_times(python, source, repeat):
    """Best and median seconds of the aggregate over `source` in DuckDB, and its row count."""
    script = f"""
import duckdb, json, time
# DuckDB draws a progress bar on stdout for a query over 2 s, which would corrupt the JSON below.
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
times = []
for _ in range({repeat}):
    t = time.perf_counter()
    rows = con.execute({DUCKDB_QUERY.format(source=source)!r}).fetchall()
    times.append(time.perf_counter() - t)
print(json.dumps([min(times), sorted(times)[len(times) // 2], len(rows), sum(r[3] for r in rows)]))
"""
    out = subprocess.run([python, "-c", script], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"duckdb failed: {out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--big-factor", type=int, default=0, help="also archive a month this many times larger as Parquet (RSS)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    python = sh("bash infra/duckdb.sh", capture=True).stdout.strip()
    env, run_dir = start_servers("pa-bench-parquet.", "bench")
    try:
        pa = f"{BINARY} --output json"
        heap = prepare_march(env, pa, args.rows)
        part = "public.trades_2026_03"
        work = tempfile.mkdtemp(prefix="pa-bench-parquet-files.")
        results = {}
        measure = measurer(env, args.repeat, results)
        reattach = lambda: reattach_march(env)
        fresh = measure_archives(measure, pa, part, [
            ("CSV.zst, defaults (2 streams)", "ARCHIVE_FORMAT=csv"),
            ("Parquet, 1 stream", "ARCHIVE_FORMAT=parquet ARCHIVE_STREAMS=1"),
            ("Parquet, defaults (2 streams)", "ARCHIVE_FORMAT=parquet"),
        ], reattach)

        # Keep one archive of each format for sizes, DuckDB and the restore.
        sizes = {}
        for fmt, suffix in (("csv", ".csv.zst"), ("parquet", ".parquet")):
            prefix = f"bench-{fmt}"
            sh(f"ARCHIVE_PREFIX={prefix} ARCHIVE_FORMAT={fmt} {pa} archive --table trades --partition trades_2026_03 > /dev/null", env=env)
            sizes[fmt] = int(sh("psql -X -At -c \"SELECT compressed_bytes FROM partition_archiver.archive_manifest WHERE partition_name = 'trades_2026_03'\"", env=env, capture=True).stdout)
            files = download(env, f"{prefix}/public.trades/year=2026/month=03/", suffix, os.path.join(work, fmt))
            print(f"  {fmt}: {len(files)} object(s), {sizes[fmt] / 2**20:.1f} MiB", file=sys.stderr)
            if fmt == "csv":
                reattach()
        # The Parquet archive stays: restore it.
        def drop_restored():
            sh(f"{PSQL} -c 'DROP TABLE bench_r.trades_2026_03'", env=env)
        # The report goes to a file, shown if the restore fails.
        out = f"{work}/restore.json"
        measure("restore Parquet, defaults (2 streams)",
                f"{pa} restore --table trades --partition trades_2026_03 --into-schema bench_r > {out} || {{ cat {out} >&2; exit 1; }}",
                reset=drop_restored)
        drop_restored()
        sh(f"psql -X -c 'COPY bench_hist.trades_2026_03 TO STDOUT (FORMAT csv, HEADER)' > {work}/p.csv", env=env)
        sh(f"{PSQL} -c 'CREATE SCHEMA bench_c' -c 'CREATE TABLE bench_c.t (LIKE public.trades)'", env=env)
        measure("raw COPY FROM csv file (one stream)", f"psql -X -c \"\\copy bench_c.t FROM '{work}/p.csv' (FORMAT csv, HEADER)\"",
                reset=lambda: sh(f"{PSQL} -c 'TRUNCATE bench_c.t'", env=env))

        duck = {
            "CSV.zst": duckdb_times(python, f"read_csv('{work}/csv/*.csv.zst')", args.repeat),
            "Parquet": duckdb_times(python, f"read_parquet('{work}/parquet/*.parquet')", args.repeat),
        }

        big = None
        if args.big_factor > 1:
            n = args.rows * args.big_factor
            fill_trades(env, "2026-04", n)
            w, r, *_ = timed(f"ARCHIVE_FORMAT=parquet {pa} archive --table trades --partition trades_2026_04 > /dev/null", env)
            big = (n, w, r)

        raw = results["raw COPY csv > /dev/null (one stream)"][0]
        copy_from = results["raw COPY FROM csv file (one stream)"][0]
        print(f"\n### {args.rows:,} rows ({heap / 2**20:.0f} MiB heap), best of {args.repeat}, {os.cpu_count()} CPUs shared by PostgreSQL, LocalStack and the client\n")
        print_results(results, raw, copy_from)
        print(f"\nobject size: CSV.zst {sizes['csv'] / 2**20:.1f} MiB, Parquet {sizes['parquet'] / 2**20:.1f} MiB "
              f"({sizes['parquet'] / sizes['csv']:.2f}x)")
        print("\n| DuckDB: sum(quantity), count(*) by symbol and day | min s | median s | groups | rows |")
        print("|---|---:|---:|---:|---:|")
        for name, (mn, med, groups, rows) in duck.items():
            print(f"| {name} | {mn:.3f} | {med:.3f} | {groups} | {rows} |")
        one, two = results["archive, Parquet, 1 stream"], results["archive, Parquet, defaults (2 streams)"]
        restore = results["restore Parquet, defaults (2 streams)"]
        print("\n| target | measured | met |")
        print("|---|---|---|")
        checks = [
            ("Parquet archive, 1 stream <= 1.3x raw single COPY", f"{one[0] / raw:.2f}x (2 streams: {two[0] / raw:.2f}x)", one[0] <= 1.3 * raw),
            ("peak RSS <= 256 MiB (defaults)", f"{two[2] / 1024:.0f} MiB", two[2] <= 256 * 1024),
            ("restore vs raw COPY FROM", f"{restore[0] / copy_from:.2f}x", True),
            ("DuckDB Parquet vs CSV.zst", f"{duck['Parquet'][0]:.3f} s vs {duck['CSV.zst'][0]:.3f} s", duck["Parquet"][0] < duck["CSV.zst"][0]),
        ]
        print_checks(checks, big, args.big_factor, two[2], " (defaults)")
    finally:
        stop_servers(env)


if __name__ == "__main__":
    main()
