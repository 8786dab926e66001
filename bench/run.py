#!/usr/bin/env python3
"""Archive benchmark: partition-archiver against what users would do instead, same partition,
same machine, one run. Prints a table (min / median of --repeat runs) and peak RSS.

    python3 bench/run.py                      # quick: 200k rows
    python3 bench/run.py --rows 5000000 --big-factor 10 --repeat 3   # the full issue-5 run

Starts its own PostgreSQL and LocalStack (infra/*.sh) and stops them at the end. Uses the release
binary (built if missing). Never a test: figures go to stdout and BENCHMARKS.md.
"""
import argparse, os, shlex, statistics, sys, tempfile, time

from common import BINARY, PSQL, fill_trades, pin_servers, print_checks, reattach_march, sh, start_servers, stop_servers


CLIENT = ""  # "taskset -c 1 " with --pin


def timed(cmd, env):
    """Wall seconds and peak RSS (KiB) of a shell command, via /usr/bin/time."""
    with tempfile.NamedTemporaryFile(mode="r") as f:
        start = time.perf_counter()
        sh(f"{CLIENT}/usr/bin/time -f %M -o {f.name} bash -c {shlex.quote(cmd)}", env=env)
        wall = time.perf_counter() - start
        rss = int(f.read().strip().splitlines()[-1])
    return wall, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000, help="rows in the 1x partition")
    ap.add_argument("--big-factor", type=int, default=0, help="also archive a partition this many times larger (memory check)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pin", action="store_true",
                    help="CPU 0: PostgreSQL; CPU 1: every client (psql, zstd, pg_dump, the archiver) and LocalStack. "
                         "Models a database server whose clients and S3 run elsewhere")
    args = ap.parse_args()

    env, run_dir = start_servers("pa-bench.", "bench")
    try:
        if args.pin:
            global CLIENT
            CLIENT = pin_servers(run_dir, env)
        psql = PSQL
        pa = f"{BINARY} --output json"
        sh(f"{pa} migrate > /dev/null", env=env)
        sh(f"env -u ARCHIVE_BUCKET {pa} maintain --now 2026-03-05T00:00:00Z > /dev/null", env=env)
        t0 = time.perf_counter()
        fill_trades(env, "2026-03", args.rows)
        print(f"generated {args.rows} rows in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        size = sh(f"psql -X -At -c \"SELECT pg_size_pretty(pg_table_size('public.trades_2026_03'))\"", env=env, capture=True).stdout.strip()

        part = "public.trades_2026_03"
        results = {}
        def measure(name, cmd, reset=None):
            walls, rsss = [], []
            for i in range(args.repeat):
                w, r = timed(cmd, env)
                walls.append(w); rsss.append(r)
                if reset and i < args.repeat - 1:
                    reset()
            results[name] = (min(walls), statistics.median(walls), max(rsss))
            print(f"  {name}: min {min(walls):.2f} s", file=sys.stderr)

        work = tempfile.mkdtemp(prefix="pa-bench-files.")
        measure("raw COPY csv > /dev/null", f"psql -X -c 'COPY {part} TO STDOUT (FORMAT csv)' > /dev/null")
        measure("psql COPY csv | zstd -3", f"psql -X -c 'COPY {part} TO STDOUT (FORMAT csv, HEADER)' | zstd -3 -q -f -o {work}/p.csv.zst")
        measure("pg_dump -Fc -t partition", f"pg_dump -Fc -t {part} -f {work}/p.dump")

        sh(f"{psql} -c \"UPDATE partition_archiver.part_config SET retention_action = 'archive_move', historical_schema = 'bench_hist' WHERE table_name = 'trades'\"", env=env)
        reattach = lambda: reattach_march(env)
        # Archives are write-once: each repeat archives under a prefix of its own (a key already
        # holding this partition would be adopted by content, not uploaded).
        fresh = "ARCHIVE_PREFIX=bench-$(date +%s%N)"
        measure("partition-archiver archive (zstd -3, S3)", f"{fresh} ARCHIVE_COMPRESSION_LEVEL=3 {pa} archive --table trades --partition trades_2026_03 > /dev/null", reset=reattach)
        reattach()
        measure("partition-archiver archive (default: zstd -1, S3)", f"{fresh} {pa} archive --table trades --partition trades_2026_03 > {work}/archive.json", reset=reattach)
        archived = sh(f"psql -X -At -c \"SELECT compressed_bytes, raw_bytes FROM partition_archiver.archive_manifest WHERE partition_name = 'trades_2026_03'\"", env=env, capture=True).stdout.strip()

        def drop_restored():
            sh(f"{psql} -c 'DROP TABLE bench_r.trades_2026_03'", env=env)
        measure("partition-archiver restore (from S3)", f"{pa} restore --table trades --partition trades_2026_03 --into-schema bench_r > /dev/null", reset=drop_restored)
        sh(f"zstd -d -q -f {work}/p.csv.zst -o {work}/p.csv", env=env)
        sh(f"{psql} -c 'CREATE SCHEMA bench_c' -c 'CREATE TABLE bench_c.t (LIKE public.trades)'", env=env)
        def truncate():
            sh(f"{psql} -c 'TRUNCATE bench_c.t'", env=env)
        measure("raw COPY FROM csv file", f"psql -X -c \"\\copy bench_c.t FROM '{work}/p.csv' (FORMAT csv, HEADER)\"", reset=truncate)

        big = None
        if args.big_factor > 1:
            n = args.rows * args.big_factor
            fill_trades(env, "2026-04", n)
            w, r = timed(f"{pa} archive --table trades --partition trades_2026_04 > /dev/null", env)
            big = (n, w, r)

        raw = results["raw COPY csv > /dev/null"][0]
        dump = results["pg_dump -Fc -t partition"][0]
        copy_from = results["raw COPY FROM csv file"][0]
        arch = results["partition-archiver archive (default: zstd -1, S3)"]
        arch3 = results["partition-archiver archive (zstd -3, S3)"]
        rest = results["partition-archiver restore (from S3)"]
        pinned = ", pinned (CPU 0: PostgreSQL; CPU 1: clients and LocalStack)" if args.pin else ", unpinned"
        print(f"\n### {args.rows:,} rows ({size} heap), {args.repeat} runs each, {os.cpu_count()} CPUs{pinned}\n")
        print("| what | min s | median s | peak RSS MiB | vs raw COPY (min) |")
        print("|---|---:|---:|---:|---:|")
        for name, (mn, med, rss) in results.items():
            print(f"| {name} | {mn:.2f} | {med:.2f} | {rss / 1024:.0f} | {mn / raw:.2f}x |")
        comp, rawb = (archived.split("|") + ["0", "0"])[:2]
        if comp and comp != "0":
            print(f"\narchive object: {int(comp) / 2**20:.1f} MiB from {int(rawb) / 2**20:.1f} MiB of CSV (ratio {int(rawb) / int(comp):.2f})")
        print("\n| target | measured | met |")
        print("|---|---|---|")
        checks = [
            ("archive <= 1.1x raw COPY", f"{arch[0] / raw:.2f}x", arch[0] <= 1.1 * raw),
            (">= 4x faster than pg_dump -Fc", f"{dump / arch[0]:.2f}x", dump >= 4 * arch[0]),
            ("(at zstd -3) archive <= 1.1x raw COPY", f"{arch3[0] / raw:.2f}x", arch3[0] <= 1.1 * raw),
            ("(at zstd -3) >= 4x faster than pg_dump -Fc", f"{dump / arch3[0]:.2f}x", dump >= 4 * arch3[0]),
            ("restore <= 1.1x raw COPY FROM", f"{rest[0] / copy_from:.2f}x", rest[0] <= 1.1 * copy_from),
            ("peak RSS <= 64 MiB (archive)", f"{arch[2] / 1024:.0f} MiB", arch[2] <= 64 * 1024),
        ]
        print_checks(checks, big, args.big_factor, arch[2])
    finally:
        stop_servers(env)


if __name__ == "__main__":
    main()
