#!/usr/bin/env python3
"""Chunked, parallel archive benchmark (issue 11): one partition archived with ARCHIVE_STREAMS 1, 2
and 4 against a raw single-stream COPY and pg_dump -Fc; CPU seconds per GB of the archiver and of
the server; parallel restore against a raw COPY FROM; a partition 10x larger for peak RSS; and a
partition archived under a time budget that needs several runs.

    python3 bench/chunks.py                                  # quick: 500k rows
    python3 bench/chunks.py --rows 5000000 --big-factor 10   # the figures in BENCHMARKS.md

Starts its own PostgreSQL and LocalStack (infra/*.sh) and stops them at the end. Uses the release
binary. Everything shares this machine's cores (PostgreSQL, LocalStack, the archiver): say so when
quoting the figures. Never a test: figures go to stdout and BENCHMARKS.md.
"""
import argparse, os, re, shlex, statistics, subprocess, sys, tempfile, time

from common import BINARY, PSQL, fill_trades, print_checks, reattach_march, sh, start_servers, stop_servers

TICK = os.sysconf("SC_CLK_TCK")


def server_cpu(env):
    """CPU seconds used by the PostgreSQL server so far: the postmaster's own plus those of the
    backends it has reaped (every connection of a finished command)."""
    pg_dir = open(os.path.join(env["PA_RUN_DIR"], "postgres.dir")).read().strip()
    pid = open(os.path.join(pg_dir, "data", "postmaster.pid")).readline().strip()
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return (utime + stime + cutime + cstime) / TICK


def localstack_cpu(env):
    """CPU seconds used so far by LocalStack's processes (the S3 server shares these cores)."""
    pid = open(os.path.join(env["PA_RUN_DIR"], "localstack.pid")).read().strip()
    total = 0.0
    for p in subprocess.run(["pgrep", "-g", pid], capture_output=True, text=True).stdout.split():
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
        except OSError:
            pass
    return total


def timed(cmd, env):
    """(wall s, peak RSS KiB, own CPU s, server CPU s, LocalStack CPU s) of a shell command."""
    with tempfile.NamedTemporaryFile(mode="r") as f:
        before, s3_before = server_cpu(env), localstack_cpu(env)
        start = time.perf_counter()
        sh(f"/usr/bin/time -f '%M %U %S' -o {f.name} bash -c {shlex.quote(cmd)}", env=env)
        wall = time.perf_counter() - start
        time.sleep(0.2)  # let the postmaster reap the command's backends
        server, s3 = server_cpu(env) - before, localstack_cpu(env) - s3_before
        rss, user, system = f.read().strip().splitlines()[-1].split()
    return wall, int(rss), float(user) + float(system), server, s3


def versions(env, prefix):
    """Object versions per key under `prefix` (LocalStack's ListObjectVersions)."""
    out = sh(f"curl -sf '{env['AWS_ENDPOINT_URL']}/{env['ARCHIVE_BUCKET']}?versions&prefix={prefix}'", env=env, capture=True).stdout
    keys = re.findall(r"<Version>.*?<Key>(.*?)</Key>.*?</Version>", out, re.S)
    counts = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    return counts


def measurer(env, repeat, results):
    """measure(name, cmd, reset=None): runs `cmd` `repeat` times (calling `reset` between runs) and
    records in `results[name]` (min s, median s, peak RSS KiB, client CPU s, server CPU s,
    LocalStack CPU s), the CPU figures of the fastest run."""
    def measure(name, cmd, reset=None):
        runs = []
        for i in range(repeat):
            runs.append(timed(cmd, env))
            if reset and i < repeat - 1:
                reset()
        best = min(runs, key=lambda r: r[0])
        results[name] = (best[0], statistics.median(r[0] for r in runs), max(r[1] for r in runs), best[2], best[3], best[4])
        print(f"  {name}: min {best[0]:.2f} s", file=sys.stderr)
    return measure


def measure_archives(measure, pa, part, configs, reattach):
    """Measures raw COPY of `part` (the yardstick), then archives March once per (name, settings)
    config, putting it back after each run. Archives are write-once: each run archives under a
    prefix of its own, the setting this returns."""
    measure("raw COPY csv > /dev/null (one stream)", f"psql -X -c 'COPY {part} TO STDOUT (FORMAT csv)' > /dev/null")
    fresh = "ARCHIVE_PREFIX=bench-$(date +%s%N)"
    for name, vars in configs:
        measure(f"archive, {name}", f"{fresh} {vars} {pa} archive --table trades --partition trades_2026_03 > /dev/null", reset=reattach)
        reattach()
    return fresh


def print_results(results, raw, copy_from, all_cpu=False):
    """The measurements table: each result against raw COPY (restores against raw COPY FROM), with
    the CPU of the client, PostgreSQL and LocalStack (and, with `all_cpu`, their sum per core)."""
    extra = " all CPU s / 2 cores |" if all_cpu else ""
    print(f"| what | min s | median s | peak RSS MiB | client CPU s | PostgreSQL CPU s | LocalStack CPU s |{extra} vs raw COPY (min) |")
    print("|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if all_cpu else "") + "---:|")
    for name, (mn, med, rss, cpu, server, s3) in results.items():
        base = copy_from if ("restore" in name or "COPY FROM" in name) else raw
        total = f" {(cpu + server + s3) / 2:.2f} |" if all_cpu else ""
        print(f"| {name} | {mn:.2f} | {med:.2f} | {rss / 1024:.0f} | {cpu:.2f} | {server:.2f} | {s3:.2f} |{total} {mn / base:.2f}x |")


def prepare_march(env, pa, rows):
    """Migrates, creates the partitions (a run in March 2026), makes trades move its archived
    months to bench_hist (so `reattach_march` can put March back), fills March with `rows` trades;
    returns March's heap bytes."""
    sh(f"{pa} migrate > /dev/null", env=env)
    sh(f"env -u ARCHIVE_BUCKET {pa} maintain --now 2026-03-05T00:00:00Z > /dev/null", env=env)
    sh(f"{PSQL} -c \"UPDATE partition_archiver.part_config SET retention_action = 'archive_move', historical_schema = 'bench_hist' WHERE table_name = 'trades'\"", env=env)
    t0 = time.perf_counter()
    fill_trades(env, "2026-03", rows)
    print(f"generated {rows} rows in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return int(sh("psql -X -At -c \"SELECT pg_relation_size('public.trades_2026_03')\"", env=env, capture=True).stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--big-factor", type=int, default=0, help="also archive a partition this many times larger (RSS)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    env, run_dir = start_servers("pa-bench-chunks.", "bench")
    try:
        psql = PSQL
        pa = f"{BINARY} --output json"
        heap = prepare_march(env, pa, args.rows)
        gb = heap / 1e9
        part = "public.trades_2026_03"
        work = tempfile.mkdtemp(prefix="pa-bench-chunks-files.")

        results = {}
        measure = measurer(env, args.repeat, results)
        reattach = lambda: reattach_march(env)
        measure("pg_dump -Fc -t partition", f"pg_dump -Fc -t {part} -f {work}/p.dump")
        fresh = measure_archives(measure, pa, part, [
            ("ARCHIVE_STREAMS=1", "ARCHIVE_STREAMS=1"),
            ("default (256MiB chunks, 2 streams)", ""),
            ("128MiB chunks, 2 streams", "ARCHIVE_CHUNK_SIZE=128MiB ARCHIVE_STREAMS=2"),
            ("128MiB chunks, 4 streams", "ARCHIVE_CHUNK_SIZE=128MiB ARCHIVE_STREAMS=4"),
        ], reattach)
        # Leave the partition archived with the defaults for the restores.
        sh(f"{fresh} {pa} archive --table trades --partition trades_2026_03 > /dev/null", env=env)
        chunks = sh("psql -X -At -c \"SELECT count(*) FROM partition_archiver.archive_chunk WHERE partition_name = 'trades_2026_03' AND state = 'uploaded'\"", env=env, capture=True).stdout.strip()

        def drop_restored():
            sh(f"{psql} -c 'DROP TABLE bench_r.trades_2026_03'", env=env)
        for streams in (1, 2, 4):
            measure(f"restore, {chunks} chunks, {streams} stream(s)", f"ARCHIVE_STREAMS={streams} {pa} restore --table trades --partition trades_2026_03 --into-schema bench_r > /dev/null", reset=drop_restored)
            drop_restored()
        sh(f"psql -X -c 'COPY bench_hist.trades_2026_03 TO STDOUT (FORMAT csv, HEADER)' > {work}/p.csv", env=env)
        sh(f"{psql} -c 'CREATE SCHEMA bench_c' -c 'CREATE TABLE bench_c.t (LIKE public.trades)'", env=env)
        measure("raw COPY FROM csv file (one stream)", f"psql -X -c \"\\copy bench_c.t FROM '{work}/p.csv' (FORMAT csv, HEADER)\"",
                reset=lambda: sh(f"{psql} -c 'TRUNCATE bench_c.t'", env=env))

        # A partition archived under a time budget: 8 MiB chunks, a budget of ~40% of a whole run.
        reattach()
        budget_vars = "ARCHIVE_CHUNK_SIZE=8MiB ARCHIVE_STREAMS=2"
        whole = timed(f"{fresh} {budget_vars} {pa} archive --table trades --partition trades_2026_03 > /dev/null", env)[0]
        reattach()
        budget = max(1.0, whole * 0.4)
        prefix = f"bench-budget-{time.time_ns()}"
        runs = []
        for _ in range(8):
            out = sh(f"ARCHIVE_PREFIX={prefix} {budget_vars} {pa} archive --table trades --partition trades_2026_03 --time-budget {budget:.2f}", env=env, capture=True, check=False).stdout
            done = sh("psql -X -At -c \"SELECT count(*) FILTER (WHERE state = 'uploaded') || '/' || count(*) FROM partition_archiver.archive_chunk WHERE partition_name = 'trades_2026_03' AND state <> 'superseded'\"", env=env, capture=True).stdout.strip()
            complete = '"complete":true' in out.replace(" ", "")
            runs.append(done)
            if complete:
                break
        counts = versions(env, f"{prefix}/public.trades/year=2026/month=03/trades_2026_03.g")

        big = None
        if args.big_factor > 1:
            n = args.rows * args.big_factor
            fill_trades(env, "2026-04", n)
            w, r, c, s, _ = timed(f"{pa} archive --table trades --partition trades_2026_04 > /dev/null", env)
            big = (n, w, r)

        raw = results["raw COPY csv > /dev/null (one stream)"][0]
        copy_from = results["raw COPY FROM csv file (one stream)"][0]
        print(f"\n### {args.rows:,} rows ({heap / 2**20:.0f} MiB heap), best of {args.repeat}, {os.cpu_count()} CPUs shared by PostgreSQL, LocalStack and the client\n")
        print_results(results, raw, copy_from, all_cpu=True)
        one = results["archive, ARCHIVE_STREAMS=1"]
        default = results["archive, default (256MiB chunks, 2 streams)"]
        a_cpu, s_cpu = one[3] / gb, one[4] / gb
        print(f"\nper stream, one stream alone: archiver {a_cpu:.2f} CPU s/GB of heap, server {s_cpu:.2f} CPU s/GB "
              f"(LocalStack {one[5] / gb:.2f}; S3 itself costs the archiver no CPU on AWS)")
        for lam, db, streams in ((6, 16, 6), (6, 16, 12)):
            per_gb = max(s_cpu / min(streams, db), a_cpu / min(streams, lam))
            print(f"expected on a {db}-vCPU database with a {lam}-vCPU Lambda, {streams} streams: {per_gb:.2f} s/GB, "
                  f"{1 / per_gb:.2f} GB/s, 500 GB in {500 * per_gb / 60:.0f} min (CPU-bound; network and storage permitting)")
        for units in (4, 8, 16):
            per_gb = max(s_cpu / min(2 * units, 16), a_cpu / (2 * units))
            print(f"fan-out, {units} Lambdas of 2 streams on a 16-vCPU database: 500 GB in {500 * per_gb / 60:.0f} min, "
                  f"{500e9 / (256 * 2**20):.0f} chunks of 256 MiB = {500e9 / (256 * 2**20):.0f} unit invocations")
        print(f"\ntime-budget run (8 MiB chunks, whole run {whole:.1f} s, budget {budget:.1f} s): {len(runs)} runs, "
              f"chunks uploaded after each: {', '.join(runs)}; versions per chunk key: "
              f"{sorted(set(counts.values()))} over {len(counts)} keys")
        print("\n| target | measured | met |")
        print("|---|---|---|")
        checks = [
            ("archive (defaults) <= 1.0x raw single COPY", f"{default[0] / raw:.2f}x", default[0] <= raw),
            ("restore (defaults) <= 0.8x raw COPY FROM", f"{results[f'restore, {chunks} chunks, 2 stream(s)'][0] / copy_from:.2f}x",
             results[f"restore, {chunks} chunks, 2 stream(s)"][0] <= 0.8 * copy_from),
            ("budgeted archive done in 3-4 runs, each chunk once", f"{len(runs)} runs, max {max(counts.values()) if counts else 0} version(s)",
             3 <= len(runs) <= 4 and counts and max(counts.values()) == 1),
        ]
        print_checks(checks, big, args.big_factor, default[2], " (defaults)")
    finally:
        stop_servers(env)


if __name__ == "__main__":
    main()
