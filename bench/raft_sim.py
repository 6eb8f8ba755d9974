"""How many deterministic Raft simulation seeds run per minute (target: >= 200).

`python -m bench.raft_sim [--seeds N]` runs fixed seeds 0..N-1 (after a short warm-up that is
not timed) and prints one JSON line. The "limit" is the issue's target rate; there is no
external system to compare a pure-CPU simulation with.
"""

from __future__ import annotations

import argparse
import json
import time

from chaos.sim.raft_cluster import run_seed

TARGET_SEEDS_PER_MINUTE = 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=300)
    args = parser.parse_args()
    for seed in range(10_000, 10_005):  # warm-up
        run_seed(seed)
    events = sim_ms = 0
    start = time.perf_counter_ns()
    for seed in range(args.seeds):
        r = run_seed(seed)
        events += r.events
        sim_ms += r.sim_ms
    elapsed_s = (time.perf_counter_ns() - start) / 1e9
    per_minute = args.seeds / elapsed_s * 60
    print(json.dumps({
        "name": "raft_sim",
        "parameters": {"seeds": args.seeds, "first_seed": 0},
        "results": {
            "seeds_per_minute": round(per_minute, 1),
            "events_per_second": round(events / elapsed_s),
            "mean_events_per_seed": round(events / args.seeds),
            "mean_simulated_ms_per_seed": round(sim_ms / args.seeds),
        },
        "unit": "seeds/min",
        "limit": {"target_seeds_per_minute": TARGET_SEEDS_PER_MINUTE},
        "ratio": round(per_minute / TARGET_SEEDS_PER_MINUTE, 2),
    }))


if __name__ == "__main__":
    main()
