"""Scale-out: jobs/s with 1, 2 and 4 worker processes on one PostgreSQL.

    PYTHONPATH=. .venv/bin/python bench/scale_out.py [--jobs 240] [--batch-seconds 0.25] [--workers 1,2,4]

A throw-away PostgreSQL (tests/pg_cluster.py), one front-end process and N worker processes of
the real App (tests/standin_bot.py) with a stand-in engine that takes a fixed time per batch of
up to [engine] max_batch = 4 jobs, so the GPU's share is constant and what is measured is the
queue's: claiming, leases, storing results, notifying and delivering. For each N: a fresh
database, all jobs submitted first, then the workers started; the rate is jobs / (last
finished_at - first started_at), read from the database.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.pg_cluster import PgCluster  # noqa: E402
from tests.standin_bot import Proc, job_rows, write_config  # noqa: E402


def run_one(cluster: PgCluster, folder: Path, workers: int, jobs: int, batch_seconds: float, max_batch: int) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    db = f"bench_{workers}"
    url = cluster.create_database(db)
    base = write_config(folder / "base.toml", url, max_batch=max_batch, lease_s=10, poll_s=0.5)
    procs: list[Proc] = []
    try:
        fe = Proc(folder / "frontend", base, "frontend")
        procs.append(fe)
        fe.wait_listening()
        members = max(1, jobs // 6)  # six each: under the flood guard's 10 per 10 s
        for i in range(jobs):
            job, refusals = fe.submit(f"m{i % members}", f"job {i}")
            assert job, refusals
        for n in range(workers):
            procs.append(Proc(folder / f"worker{n}", base, "worker", batch_seconds=batch_seconds))
        deadline = time.monotonic() + 600
        while True:
            rows = job_rows(cluster, db)
            if all(r["status"] == "done" for r in rows):
                break
            if time.monotonic() > deadline or any(p.proc.poll() is not None for p in procs):
                raise RuntimeError("the run did not finish:\n" + "\n".join(p.log_tail(10) for p in procs))
            time.sleep(0.25)
        span = max(r["finished_at"] for r in rows) - min(r["started_at"] for r in rows)
        batches = len({(r["worker_id"], r["started_at"]) for r in rows})
        return {"workers": workers, "jobs": len(rows), "span": span, "rate": len(rows) / span, "batches": batches}
    finally:
        for p in procs:
            p.terminate()
        cluster.drop_database(db)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=480)
    parser.add_argument("--batch-seconds", type=float, default=0.25)
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    ideal_one = args.max_batch / args.batch_seconds
    folder = Path(tempfile.mkdtemp(prefix="restyle-scale-out-"))
    results = []
    try:
        with PgCluster.temporary(prefix="restyle-pg-bench-") as cluster:
            cluster.start()
            for n in counts:
                results.append(run_one(cluster, folder / f"n{n}", n, args.jobs, args.batch_seconds, args.max_batch))
                r = results[-1]
                print(f"  {n} worker(s): {r['jobs']} jobs in {r['span']:.2f} s", file=sys.stderr)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    base = results[0]["rate"]
    print(f"{args.jobs} jobs, stand-in engine {args.batch_seconds} s per batch of up to {args.max_batch} "
          f"(ideal {ideal_one:.1f} jobs/s per worker); {platform.node()}, {platform.python_version()}")
    print()
    print("| workers | jobs | batches | first start -> last finish (s) | jobs/s | speed-up vs 1 | of ideal |")
    print("|--:|--:|--:|--:|--:|--:|--:|")
    for r in results:
        print(f"| {r['workers']} | {r['jobs']} | {r['batches']} | {r['span']:.2f} | {r['rate']:.1f} | "
              f"{r['rate'] / base:.2f}x | {r['rate'] / (ideal_one * r['workers']):.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
