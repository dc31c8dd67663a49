#!/usr/bin/python3
"""Draws the README's benchmark charts from one run's JSON output.

    bench/report.py RESULTS_DIR OUT_DIR

RESULTS_DIR holds what scripts/bench writes: one Google Benchmark JSON file
per binary (--benchmark_out, e.g. redkit_bench_lock.json) and run.json (the
commit, date and machine of the run). OUT_DIR gets one SVG per chart whose
data is there, and a copy of the JSON it was drawn from, so a committed chart
can be checked against its numbers. `scripts/bench --report` runs the
benchmarks and then this.

Charts, and the benchmark names each reads:
  ratios.svg         every paired benchmark (bench_common.hpp's Pairs, and the
                     lock's uncontended sides): `<pair>/<side>/round:<n>` with
                     an ops_per_s or pairs_per_s counter. Per pair and raw side,
                     the per-round ratios redkit / raw, their median as a bar.
                     A new pair shows up here by itself.
  lock_handoff.svg   lock_handoff_across_processes/<mode>: the p<N>_us percentile counters.
  lock_waiting.svg   lock_8_waiters_2s_hold/<who>: server_commands.
  cache_stampede.svg stampede_32x50ms/<backend>/<pattern>: loads_per_round, p50_ms, p99_ms.
  near_cache.svg     every near-cache pair (a Pairs pair whose name starts
                     with "near_", such as near_get_hit_100B/<side>/round:<n>),
                     median ops_per_s per side. Drawn once such a benchmark exists.
"""

import json
import os
import re
import shutil
import statistics
import sys

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

# Reproducible SVGs: no timestamp, stable element ids, text kept as text.
plt.rcParams["svg.hashsalt"] = "redkit"
plt.rcParams["svg.fonttype"] = "none"
plt.rcParams["font.size"] = 9
plt.rcParams["font.family"] = "sans-serif"

# Log axes labelled 0.1, 1, 10 rather than 10^-1, 10^0, 10^1.
PLAIN = FuncFormatter(lambda value, _: f"{value:g}")

REDKIT = "#c0392b"
RAW = "#7f8c8d"
OTHER = "#2980b9"

# What each pair compares, as the README's table says it; a pair not listed
# is labelled by its name.
PAIR_LABELS = {
    ("counter_incr", "raw_hiredis"): "RedisCounter::incr vs INCR",
    ("pipeline_100_incrby", "raw_hiredis"): "Redis::pipeline of 100 INCRBY vs raw appends",
    ("cache_get_hit_100B", "raw_hiredis"): "RedisCache::get hit (100 B) vs GET",
    ("cache_get_many_100x100B", "raw_hiredis"): "RedisCache::get_many (100 keys) vs MGET",
    ("cluster_counter_incr", "raw_hiredis"): "Cluster counter incr vs INCR at its master",
    ("cluster_get_many_1000", "raw_hiredis"): "Cluster::pipeline (1,000 GETs) vs raw per master",
    ("lock_unlock_uncontended/redkit_reused_object", "raw_hiredis"):
        "RedisLock lock+unlock (one object) vs SET NX PX + EVALSHA",
    ("lock_unlock_uncontended/redkit_fresh_object", "raw_hiredis"):
        "RedisLock lock+unlock (fresh object) vs SET NX PX + EVALSHA",
    ("lock_unlock_uncontended/raw_hiredis_redkit_commands", "raw_hiredis"):
        "raw sending RedisLock's commands vs SET NX PX + EVALSHA",
    ("pipeline_256_get", "raw_hiredis"): "Redis::pipeline of 256 GETs vs raw appends",
    ("allow_allowed", "raw_hiredis"): "RedisRateLimiter::allow (allowed) vs EVALSHA",
    ("allow_denied", "raw_hiredis"): "RedisRateLimiter::allow (denied) vs EVALSHA",
    ("tls_get_100b/tls", "plain"): "GET (100 B) over TLS vs plain TCP, both redkit",
    ("tls_pipeline_100_get/tls", "plain"): "pipeline of 100 GETs over TLS vs plain",
}
# The README's targets (goals, not measurements).
TARGETS = {
    ("counter_incr", "raw_hiredis"): 0.95,
    ("cache_get_hit_100B", "raw_hiredis"): 0.95,
    ("cache_get_many_100x100B", "raw_hiredis"): 0.95,
    ("cluster_counter_incr", "raw_hiredis"): 0.9,
    ("lock_unlock_uncontended/redkit_reused_object", "raw_hiredis"): 0.95,
    ("lock_unlock_uncontended/redkit_fresh_object", "raw_hiredis"): 0.9,
    ("pipeline_256_get", "raw_hiredis"): 1.0,
    ("allow_allowed", "raw_hiredis"): 0.95,
    ("allow_denied", "raw_hiredis"): 0.95,
    ("tls_get_100b/tls", "plain"): 0.7,
    # Not drawn: near-cache pairs have their own chart (ops/s per side).
    ("near_get_hit_100B", "raw_hiredis"): 50,
}
# Benchmarks with several sides measured against one reference side: each
# side's ratio is taken against that reference, keyed (pair/side, reference).
# The TLS pairs are redkit against redkit (sides tls and plain).
REFERENCE_SIDE = {
    "lock_unlock_uncontended": "raw_hiredis",
    "tls_get_100b": "plain",
    "tls_pipeline_100_get": "plain",
}
ROUND = re.compile(r"^(?P<pair>[^/]+)/(?P<side>[^/]+)/round:(?P<round>\d+)$")


# Google Benchmark appends the run's settings to a name
# ("counter_incr/redkit/round:0/iterations:20000/real_time").
SETTINGS = re.compile(r"^(iterations|repeats|threads|min_time):[\d.]+$|^(real|manual)_time$")


def base_name(name):
    """A benchmark's registered name, without the settings appended to it."""
    return "/".join(part for part in name.split("/") if not SETTINGS.match(part))


def load(results_dir):
    """All benchmark entries of every *.json in results_dir, and run.json."""
    benchmarks, run = [], {}
    for name in sorted(os.listdir(results_dir)):
        path = os.path.join(results_dir, name)
        if name == "run.json":
            with open(path) as f:
                run = json.load(f)
        elif name.endswith(".json"):
            with open(path) as f:
                text = f.read()
            if not text.strip():
                print(f"bench/report.py: {name} is empty (no benchmark matched the filter?)", file=sys.stderr)
                continue
            data = json.loads(text)
            for b in data.get("benchmarks", []):
                if b.get("error_occurred"):
                    print(f"bench/report.py: {name}: {b['name']} failed: {b.get('error_message')}",
                          file=sys.stderr)
                    continue
                b["name"] = base_name(b["name"])
                benchmarks.append(b)
            run.setdefault("host", data.get("context", {}).get("host_name", ""))
    return benchmarks, run


def footnote(fig, run):
    commit = run.get("commit", "unknown commit")[:10] + (" (modified)" if run.get("dirty") else "")
    text = (f"One run of scripts/bench --report, {run.get('date', 'unknown date')}, redkit {commit}, "
            f"{run.get('machine', '')}")
    fig.text(0.01, 0.01, text, fontsize=7, color="#555555", ha="left", va="bottom")


def save(fig, run, out_dir, name):
    footnote(fig, run)
    path = os.path.join(out_dir, name)
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    print(f"bench/report.py: wrote {path}")


def paired_ratios(benchmarks):
    """{(pair, raw side): [ratio per round]}, redkit / raw per round index."""
    speed = {}
    for b in benchmarks:
        m = ROUND.match(b["name"])
        if not m:
            continue
        value = b.get("ops_per_s", b.get("pairs_per_s"))
        if value:
            speed[(m["pair"], m["side"], int(m["round"]))] = value
    ratios = {}
    for (pair, side, r), value in sorted(speed.items()):
        if pair in REFERENCE_SIDE:
            ref = speed.get((pair, REFERENCE_SIDE[pair], r))
            if side != REFERENCE_SIDE[pair] and ref:
                ratios.setdefault((f"{pair}/{side}", REFERENCE_SIDE[pair]), []).append(value / ref)
            continue
        if side == "redkit":
            continue
        mine = speed.get((pair, "redkit", r))
        if mine:
            ratios.setdefault((pair, side), []).append(mine / value)
    return ratios


def chart_ratios(benchmarks, run, out_dir):
    # Near-cache pairs (100x and more) have their own chart, near_cache.svg.
    ratios = {k: v for k, v in paired_ratios(benchmarks).items() if not k[0].startswith("near_")}
    if not ratios:
        return False
    keys = sorted(ratios, key=lambda k: (list(PAIR_LABELS).index(k) if k in PAIR_LABELS else 99, k))
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(keys) + 1.4))
    for i, key in enumerate(keys):
        values = ratios[key]
        med = statistics.median(values)
        ax.barh(i, med, color=REDKIT if med >= TARGETS.get(key, 0) else "#e59866", height=0.6)
        ax.plot(values, [i] * len(values), "|", color="black", markersize=8, alpha=0.5)
        ax.text(0.02, i, f"{med:.2f}×", va="center", ha="left", fontsize=8, color="white")
        if key in TARGETS:
            ax.plot([TARGETS[key]] * 2, [i - 0.38, i + 0.38], color="black", linewidth=1.5)
    ax.axvline(1.0, color=RAW, linestyle="--", linewidth=1)
    ax.set_yticks(range(len(keys)))
    ax.set_yticklabels([PAIR_LABELS.get(k, f"{k[0]} vs {k[1]}") for k in keys])
    ax.invert_yaxis()
    ax.set_xlim(0, max(1.35, max(max(v) for v in ratios.values()) + 0.15))
    ax.set_xlabel("throughput, redkit ÷ raw hiredis (dashed line: 1, as fast as raw)\n"
                  "bar: median of paired rounds (lighter: below target) · ticks: rounds · black: target")
    ax.set_title("redkit against raw hiredis: same work, same server, same run")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    save(fig, run, out_dir, "ratios.svg")
    return True


HANDOFF_MODES = [("redkit", "RedisLock (woken by the release)", REDKIT),
                 ("pubsub", "raw SET NX + pub/sub wake-up", OTHER),
                 ("poll", "raw SET NX, polling every 100 ms", RAW)]


def chart_lock_handoff(benchmarks, run, out_dir):
    curves = {}
    for b in benchmarks:
        if b["name"].startswith("lock_handoff_across_processes/"):
            points = sorted((int(k[1:-3]), v / 1000.0) for k, v in b.items()
                            if re.fullmatch(r"p\d+_us", k))
            if points:
                curves[b["name"].split("/", 1)[1]] = (points, int(b.get("samples", 0)))
    if not curves:
        return False
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for mode, label, color in HANDOFF_MODES:
        if mode not in curves:
            continue
        points, samples = curves[mode]
        p50 = dict(points).get(50)
        ax.plot([ms for _, ms in points], [p for p, _ in points], marker="o", markersize=3, color=color,
                label=f"{label}: p50 {p50:.3g} ms ({samples} handoffs)")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(PLAIN)
    ax.set_xlabel("release → waiter in another process holds the lock (ms, log scale)")
    ax.set_ylabel("percentile")
    ax.set_yticks([0, 10, 25, 50, 75, 90, 100])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Lock handoff latency distribution")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    save(fig, run, out_dir, "lock_handoff.svg")
    return True


def chart_lock_waiting(benchmarks, run, out_dir):
    rows = []
    for who, label, color in [("redkit_8_clients", "8 RedisLock waiters, 8 clients", REDKIT),
                              ("redkit_8_threads_one_client", "8 RedisLock threads, one client", OTHER),
                              ("raw_poll_100ms", "8 raw pollers (100 ms)", RAW)]:
        for b in benchmarks:
            if b["name"] == f"lock_8_waiters_2s_hold/{who}":
                rows.append((label, None, b["server_commands"], color))
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(8, 2.6))
    for i, (label, _, total, color) in enumerate(rows):
        ax.barh(i, total, color=color, height=0.6)
        ax.text(total + 3, i, f"{total:.0f} server commands (calls inside scripts included)",
                va="center", fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, max(r[2] for r in rows) * 1.8)
    ax.set_xlabel("commands the server received during one 2 s hold")
    ax.set_title("What waiting costs the server")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    save(fig, run, out_dir, "lock_waiting.svg")
    return True


def chart_cache_stampede(benchmarks, run, out_dir):
    rows = []
    for backend, backend_label in [("parallel_backend", "parallel backend"),
                                   ("serial_backend", "serial backend")]:
        for pattern, pattern_label, color in [("get_or_set", "get_or_set", REDKIT),
                                              ("naive_get_load_set", "naive get, load, set", RAW)]:
            for b in benchmarks:
                if b["name"] == f"stampede_32x50ms/{backend}/{pattern}" and "loads_per_round" in b:
                    rows.append((f"{pattern_label}\n{backend_label}", b, color))
    if not rows:
        return False
    fig, (loads_ax, p99_ax) = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for i, (label, b, color) in enumerate(rows):
        loads_ax.barh(i, b["loads_per_round"], color=color, height=0.6)
        loads_ax.text(b["loads_per_round"] * 1.1, i, f"{b['loads_per_round']:.3g}", va="center", fontsize=8)
        p99_ax.barh(i, b["p99_ms"], color=color, height=0.6)
        p99_ax.plot([b["p50_ms"]] * 2, [i - 0.3, i + 0.3], color="black", linewidth=1.5)
        p99_ax.text(b["p99_ms"] * 1.1, i, f"{b['p99_ms']:.0f} ms", va="center", fontsize=8)
    loads_ax.set_yticks(range(len(rows)))
    loads_ax.set_yticklabels([r[0] for r in rows])
    loads_ax.invert_yaxis()
    loads_ax.set_xscale("log")
    loads_ax.xaxis.set_major_formatter(PLAIN)
    loads_ax.set_xlim(0.5, 200)
    loads_ax.set_xlabel("loads per stampede (log scale)")
    p99_ax.set_xscale("log")
    p99_ax.xaxis.set_major_formatter(PLAIN)
    p99_ax.set_xlim(10, max(r[1]["p99_ms"] for r in rows) * 4)
    p99_ax.set_xlabel("caller latency: bar p99, black line p50 (ms, log)")
    fig.suptitle("Cache stampede: 32 threads miss one key at once, loader takes 50 ms")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    save(fig, run, out_dir, "cache_stampede.svg")
    return True


def chart_near_cache(benchmarks, run, out_dir):
    """Median ops/s per side of every near-cache pair (near_<op>/<side>/round:<n>)."""
    speeds = {}
    for b in benchmarks:
        m = ROUND.match(b["name"])
        if not b["name"].startswith("near_") or not m:
            continue
        label = f"{m['pair']}: {m['side']}"
        value = b.get("ops_per_s")
        if value:
            speeds.setdefault(label, []).append(value)
    if not speeds:
        return False
    labels = sorted(speeds)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(labels) + 1.3))
    for i, label in enumerate(labels):
        med = statistics.median(speeds[label])
        ax.barh(i, med, color=REDKIT if "near" in label.split(": ")[-1] else RAW, height=0.6)
        ax.text(med * 1.02, i, f"{med:,.0f} ops/s", va="center", fontsize=8)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("operations per second (median of rounds, log scale)")
    ax.set_title("Near cache: a hit from process memory against a remote GET")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    save(fig, run, out_dir, "near_cache.svg")
    return True


CHARTS = [chart_ratios, chart_lock_handoff, chart_lock_waiting, chart_cache_stampede, chart_near_cache]


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    results_dir, out_dir = argv[1], argv[2]
    benchmarks, run = load(results_dir)
    if not benchmarks:
        print(f"bench/report.py: no benchmark results in {results_dir}", file=sys.stderr)
        return 1
    os.makedirs(out_dir, exist_ok=True)
    drawn = [chart.__name__ for chart in CHARTS if chart(benchmarks, run, out_dir)]
    skipped = [chart.__name__ for chart in CHARTS if chart.__name__ not in drawn]
    if skipped:
        print(f"bench/report.py: no data for {', '.join(skipped)} (skipped)")
    data_dir = os.path.join(out_dir, "data")
    os.makedirs(data_dir, exist_ok=True)
    for name in sorted(os.listdir(results_dir)):
        if name.endswith(".json"):
            shutil.copy(os.path.join(results_dir, name), os.path.join(data_dir, name))
    return 0 if drawn else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
