#!/usr/bin/env python3
"""Scale benchmark (issue 19): one partition of at least --gb GB of heap, archived and restored
through the fan-out contract, every step a separate process given a deadline of --deadline
seconds (`--time-budget`, the stand-in for a Lambda's 15 minutes at this size):

    archive: prepare (`maintain --fan-out`), every unit (`archive-chunk`), Finish (`maintain`:
             verify, drop), rounds again while the Finish says it is not complete;
    restore: plan (`restore --fan-out`), every unit (`restore-chunk`), the final step (`restore`:
             rename), rounds again while it is not complete.

It prints each invocation's wall time and peak RSS as it goes, fails if one exceeds its deadline
(or fails), and at the end checks that the restored partition's fingerprint (count and a sum of
per-row md5 values over every row) equals the original's. Then the same for the other format:
the restored table is put back as the partition (untimed set-up) and archived again as Parquet.

    python3 bench/scale.py                       # the figures in BENCHMARKS.md: 8 GB, 10 s, CSV and Parquet
    python3 bench/scale.py --gb 0.3              # a quick run
    python3 bench/scale.py --then move           # the Finish moves the partition to a historical
                                                 # schema (archive_move) instead of dropping it

With `--then move` the Finish does no DROP (a catalog change instead), and the DROP of the moved
table is timed afterwards, outside any invocation: what PostgreSQL takes to remove the files.

Starts its own PostgreSQL and LocalStack (infra/*.sh) and stops them at the end; uses the release
binary. Everything shares this machine's 2 cores. Never a test: figures go to stdout.
"""
import argparse, json, os, shlex, subprocess, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor

from common import BINARY, PSQL, TRADES, sh, start_servers, stop_servers

PARTITION = "trades_2026_03"
NOW = "2026-10-05T00:00:00Z"  # March is past the 6-month retention; nothing later is


class Violation(Exception):
    pass


class Runner:
    """Runs the binary as one invocation each, timing it against the deadline."""

    def __init__(self, env, deadline):
        self.env, self.deadline = env, deadline
        self.log = []  # (phase, label, wall s, peak RSS KiB)

    def invoke(self, phase, label, args, ok_codes=(0,)):
        with tempfile.NamedTemporaryFile(mode="r") as f:
            cmd = f"/usr/bin/time -f '%M' -o {f.name} {BINARY} --output json {args} --time-budget {self.deadline}"
            start = time.perf_counter()
            r = subprocess.run(cmd, shell=True, env=self.env, text=True, capture_output=True)
            wall = time.perf_counter() - start
            rss = int((f.read().strip().splitlines() or ["0"])[-1])
        self.log.append((phase, label, wall, rss))
        over = " OVER THE DEADLINE" if wall > self.deadline else ""
        print(f"  {phase:<16} {label:<28} {wall:6.2f} s  {rss / 1024:6.1f} MiB{over}", flush=True)
        try:
            out = json.loads(r.stdout) if r.stdout.strip() else {}
        except ValueError:
            out = {}
        for t in out.get("tables", []) if isinstance(out, dict) else []:
            for step in t.get("steps", []):
                if step.get("duration_ms", 0) >= 100:
                    tries = step.get("attempts", 1)
                    print(f"      {step['step']} {step['partition']}: {step['duration_ms'] / 1000:.2f} s ({tries} attempts)", flush=True)
        if r.returncode not in ok_codes:
            raise Violation(f"{args}: exit {r.returncode}\n{r.stdout}\n{r.stderr[-3000:]}")
        if over:
            raise Violation(f"{args}: {wall:.2f} s, over the {self.deadline} s deadline")
        return out

    def units(self, phase, make_args, units, concurrency):
        """Runs every unit, `concurrency` at once (the Map's MaxConcurrency)."""
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            return list(pool.map(lambda u: self.invoke(phase, f"chunk {u['chunk']}", make_args(u)), units))


def psql_value(env, sql):
    return sh(f"psql -X -At -c {shlex.quote(sql)}", env=env, capture=True).stdout.strip()


def fingerprint(env, table):
    """Row count and the sum of the first 60 bits of each row's md5: equal for equal row sets,
    whatever their order (md5 of the whole text would need it sorted and in memory)."""
    return psql_value(env, f"SELECT count(*) || ' ' || coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0) FROM {table} t")


def fill(env, gb):
    """Fills March with batches of trades until its heap holds `gb` GB; returns the heap bytes."""
    target, batch, start = gb * 1e9, 2_000_000, time.perf_counter()
    while True:
        heap = int(psql_value(env, f"SELECT pg_relation_size('public.{PARTITION}')"))
        if heap >= target:
            break
        # Two sessions at once (two cores); each batch is one transaction.
        sql = shlex.quote(TRADES.format(start="2026-03-01 00:00+00", n=batch))
        sh(f"{PSQL} -c {sql} & {PSQL} -c {sql} & wait", env=env)
        print(f"  {heap / 1e9:5.2f} GB of {gb} GB ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    sh(f"{PSQL} -c 'VACUUM ANALYZE public.{PARTITION}'", env=env)
    return heap


def archive(run, table, concurrency):
    """prepare, units, Finish; again while not complete. Returns the chunks archived."""
    chunks = set()
    for round_no in range(1, 25):
        prepared = run.invoke("archive prepare", f"round {round_no}", f"maintain --now {NOW} --table {table} --fan-out")
        units = [u for u in prepared.get("units", []) if u["partition"] == PARTITION]
        chunks |= {u["chunk"] for u in units}
        outcomes = run.units(
            "archive unit",
            lambda u: f"archive-chunk --table {u['table']} --partition {u['partition']} --chunk {u['chunk']}",
            units,
            concurrency,
        )
        left = [o for o in outcomes if o.get("outcome") not in ("uploaded", "already_uploaded")]
        if left:
            print(f"  {len(left)} units not done this round: {[o.get('outcome') for o in left]}", flush=True)
        finished = run.invoke("archive finish", f"round {round_no}", f"maintain --now {NOW} --table {table}")
        if finished.get("complete"):
            return chunks
    raise Violation("the archive was not complete after 24 rounds")


def restore(run, table, schema, concurrency):
    """plan, units, final step; again while not complete. Returns the restore's final report."""
    base = f"restore --table {table} --partition {PARTITION} --into-schema {schema}"
    for round_no in range(1, 25):
        plan = run.invoke("restore plan", f"round {round_no}", f"{base} --fan-out")["restore"]
        run.units(
            "restore unit",
            lambda u: f"restore-chunk --table {u['table']} --partition {u['partition']} --chunk {u['chunk']} "
            f"--restore-id {u['restore_id']} --into-schema {u['into_schema']}",
            plan["units"],
            concurrency,
        )
        final = run.invoke("restore final", f"round {round_no}", base)["restore"]
        if final.get("complete"):
            return final
    raise Violation("the restore was not complete after 24 rounds")


def summary(run, fmt, heap, chunks, chunk_mib, deadline):
    gb = heap / 1e9
    lines = [f"\n{fmt}: {gb:.2f} GB of heap, {len(chunks)} chunks of {chunk_mib} MiB, every invocation given {deadline} s"]
    for side in ("archive", "restore"):
        rows = [r for r in run.log if r[0].startswith(side)]
        units = [r for r in rows if r[0].endswith("unit")]
        total = sum(r[2] for r in rows)
        lines.append(
            f"  {side}: {len(rows)} invocations ({len(units)} units), {total:.1f} s of invocations in all, "
            f"longest {max(r[2] for r in rows):.2f} s, peak RSS {max(r[3] for r in rows) / 1024:.1f} MiB; "
            f"units {sum(r[2] for r in units) / gb:.1f} s/GB"
        )
        # 500 GB on AWS: 256 MiB chunks (the default), each unit at this per-byte rate, 4 at once
        # (FanOutConcurrency's default), each well inside a 15-minute invocation.
        per_mib = sum(r[2] for r in units) / (len(chunks) * chunk_mib)
        n = int(500e9 / (256 * 2**20)) + 1
        lines.append(
            f"    500 GB at this rate: {n} units of 256 MiB at {per_mib * 256:.1f} s each (the deadline is 900 s), "
            f"{n * per_mib * 256 / 4 / 3600:.1f} h with 4 at once"
        )
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=8.0, help="heap of the partition, in GB (1e9 bytes)")
    ap.add_argument("--deadline", type=float, default=10.0, help="seconds each invocation is given")
    ap.add_argument("--chunk-mib", type=int, default=64, help="ARCHIVE_CHUNK_SIZE: a restore unit must fit the deadline at the assumed 20 MiB/s")
    ap.add_argument("--concurrency", type=int, default=2, help="units at once (the Map's MaxConcurrency)")
    ap.add_argument("--formats", default="csv,parquet")
    ap.add_argument("--then", choices=("drop", "move"), default="drop", help="the table's retention action: archive_drop or archive_move")
    args = ap.parse_args()
    done_state = {"drop": "dropped", "move": "moved"}[args.then]

    env, _ = start_servers("pa-bench-scale.", "bench", ARCHIVE_CHUNK_SIZE=f"{args.chunk_mib}MiB")
    report = []
    try:
        sh(f"{BINARY} migrate > /dev/null", env=env)
        sh(f"env -u ARCHIVE_BUCKET {BINARY} maintain --now 2026-03-05T00:00:00Z > /dev/null", env=env)
        t0 = time.perf_counter()
        if args.then == "move":
            sh(f"{PSQL} -c \"UPDATE partition_archiver.part_config SET retention_action = 'archive_move', historical_schema = 'scale_hist' WHERE table_name = 'trades'\"", env=env)
        heap = fill(env, args.gb)
        print(f"filled {PARTITION}: {heap / 1e9:.2f} GB of heap in {time.perf_counter() - t0:.0f} s", flush=True)
        original = fingerprint(env, f"public.{PARTITION}")
        print(f"fingerprint (rows, md5 sum): {original}", flush=True)
        for fmt in args.formats.split(","):
            sh(f"{PSQL} -c \"UPDATE partition_archiver.part_config SET archive_format = '{fmt}' WHERE table_name = 'trades'\"", env=env)
            run_env = dict(env, ARCHIVE_PREFIX=f"scale-{fmt}")
            run = Runner(run_env, args.deadline)
            print(f"\n{fmt}: archive", flush=True)
            chunks = archive(run, "public.trades", args.concurrency)
            state = psql_value(env, f"SELECT state FROM partition_archiver.archive_manifest WHERE partition_name = '{PARTITION}'")
            if state != done_state:
                raise Violation(f"after the archive, {PARTITION} is {state}, not {done_state}")
            print(f"{fmt}: restore", flush=True)
            schema = f"scale_{fmt}"
            restore(run, "public.trades", schema, args.concurrency)
            restored = fingerprint(env, f"{schema}.{PARTITION}")
            print(f"fingerprint of the restore: {restored}", flush=True)
            if restored != original:
                raise Violation(f"the restored {PARTITION} differs: {restored}, the original {original}")
            report.append(summary(run, fmt, heap, chunks, args.chunk_mib, args.deadline))
            if args.then == "move":
                t = time.perf_counter()
                sh(f"{PSQL} -c 'DROP TABLE scale_hist.{PARTITION}'", env=env)
                report.append(f"  then, outside any invocation: DROP TABLE of the moved partition took {time.perf_counter() - t:.2f} s")
            # Untimed set-up for the next format: the restored table becomes the partition again.
            copy_checks = ("DO $$ DECLARE c record; BEGIN FOR c IN SELECT conname, pg_get_constraintdef(oid) AS def "
                           "FROM pg_constraint WHERE conrelid = 'public.trades'::regclass AND contype = 'c' LOOP "
                           f"EXECUTE format('ALTER TABLE public.{PARTITION} ADD CONSTRAINT %I %s', c.conname, c.def); "
                           "END LOOP; END $$")
            sh(f"""{PSQL} -c "ALTER TABLE {schema}.{PARTITION} SET SCHEMA public" -c {shlex.quote(copy_checks)} \
                   -c "ALTER TABLE public.trades ATTACH PARTITION public.{PARTITION} FOR VALUES FROM ('2026-03-01 00:00+00') TO ('2026-04-01 00:00+00')" \
                   -c "DELETE FROM partition_archiver.archive_chunk WHERE partition_name = '{PARTITION}'" \
                   -c "DELETE FROM partition_archiver.archive_manifest WHERE partition_name = '{PARTITION}'" """, env=env)
        print("\n".join(report))
        print("\nevery invocation finished within its deadline; each restore's fingerprint equals the original's")
    except Violation as e:
        print("\n".join(report))
        sys.exit(f"FAILED: {e}")
    finally:
        stop_servers(env)


if __name__ == "__main__":
    main()
