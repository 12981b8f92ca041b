#!/usr/bin/env python3
"""Render results.json from bench/runner.py into docs/benchmarks.md plus PNG plots.

    python3 bench/report.py bench/results/<stamp>/results.json [--out docs/benchmarks.md]

The runner calls write_report() at the end of a run; running this file by hand
re-renders a report from saved results without measuring anything again.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

ORDER = ["appserver", "granian", "gunicorn", "uwsgi", "oldstack", "ceiling"]
LABELS = {
    "appserver": "appserver",
    "granian": "Granian",
    "gunicorn": "gunicorn gthread",
    "uwsgi": "uWSGI --http-socket",
    "oldstack": "nginx→haproxy→uWSGI",
    "ceiling": "C++ ceiling (no Python)",
}
WL_TITLES = {
    "hello": "1 KiB bytes response",
    "json": "~4 KiB dict serialized with stdlib json",
    "django": "Django view: one ORM query on SQLite + template render",
    "upload": "POST 1 MiB, app reads wsgi.input fully, returns its length",
    "stream": "generator yielding 64 chunks of 16 KiB (1 MiB, chunked)",
    "io": "app sleeps 10 ms (blocking I/O stand-in)",
}
PCTS = ["p50", "p95", "p99", "p99.9"]
CLIENT_BOUND = 0.9  # load generator CPU share above which a point is flagged as client-bound
NOISY_PCT = 20.0  # CPU % used by other processes during a run above which a point is flagged
COLORS = {"appserver": "#d62728", "granian": "#1f77b4", "gunicorn": "#2ca02c", "uwsgi": "#9467bd",
          "oldstack": "#8c564b", "ceiling": "#7f7f7f"}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_int(x):
    return "n/a" if x is None else f"{x:,.0f}"


def fmt_ms(x):
    if x is None:
        return "n/a"
    return f"{x:.2f}" if x < 10 else f"{x:,.1f}" if x < 1000 else f"{x:,.0f}"


def fmt_ratio(a, b):
    if a is None or not b:
        return "n/a"
    return f"{a / b:.2f}×"


def count_cpus(spec) -> int:
    if not spec or not isinstance(spec, str) or not spec[0].isdigit():
        return 0
    n = 0
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


class Summary:
    """Medians per point, best throughput, open-loop latencies, flags."""

    def __init__(self, res: dict):
        self.res = res
        self.meta = res.get("meta", {})
        cfg = self.meta.get("config", {})
        self.conc = cfg.get("conc", [])
        self.fractions = cfg.get("open_fractions", [])
        self.workloads = [w for w in cfg.get("workloads", []) if w in res.get("status", {})]
        seen = {r["server"] for r in res.get("runs", [])}
        for st in res.get("status", {}).values():
            seen |= set(st)
        self.servers = [s for s in ORDER if s in seen]
        self.flags: list[str] = []
        self.notes: list[str] = []  # benign, explained
        self.noise: dict[str, list] = {}  # workload -> [points, noisy points, max foreign %]
        self._runs: dict[tuple, list[dict]] = {}
        for r in res.get("runs", []):
            key = (r["workload"], r["server"], r["phase"],
                   r["conc"] if r["phase"] == "closed" else r["fraction"])
            self._runs.setdefault(key, []).append(r)
        for key, runs in sorted(self._runs.items(), key=str):
            self._flag(key, runs)
        for wl, (pts, bad, worst) in self.noise.items():
            if bad:
                self.flags.append(f"{wl}: in {bad} of {pts} points other processes used more "
                                  f"than {NOISY_PCT:.0f}% of the machine's CPU during a run "
                                  f"(worst {worst:.0f}%): treat this workload's numbers as noisy")

    def _flag(self, key, runs):
        wl, srv, phase, x = key
        where = f"{wl} / {LABELS.get(srv, srv)} / " + (f"c={x}" if phase == "closed"
                                                      else f"open {float(x):.0%}")
        errs = sum(r.get("errors") or 0 for r in runs)
        bad = sum(r.get("bad_status") or 0 for r in runs)
        reqs = sum(r.get("requests") or 0 for r in runs)
        failed = [r["error"] for r in runs if r.get("error")]
        if failed:
            self.flags.append(f"{where}: {len(failed)} run(s) failed: {failed[0]}")
        util = max((r.get("client_util") or 0 for r in runs), default=0)
        if util > CLIENT_BOUND:
            self.flags.append(f"{where}: the load generator used {util:.0%} of its CPU: this "
                              "point may measure the load generator rather than the server")
        reads = sum((r.get("error_kinds") or {}).get("read", 0) for r in runs)
        short = any(r.get("short_responses") for r in runs)
        if errs and not bad and not short and reads == errs and abs(reads - reqs) <= max(2, reqs // 100):
            # One read error per request, full-size bodies: the server ends each response by
            # closing the connection (no Content-Length, no chunking) and wrk counts the close.
            self.notes.append(f"{where}: responses are close-delimited (no Content-Length, no "
                              "chunking, connection closed after each); wrk counts each close as "
                              f"a read error ({reads:,}), the bodies were complete")
        elif errs or bad:
            kinds = {}
            for r in runs:
                for k, v in (r.get("error_kinds") or {}).items():
                    kinds[k] = kinds.get(k, 0) + v
            detail = f" ({', '.join(f'{k} {v}' for k, v in kinds.items())})" if kinds else ""
            self.flags.append(f"{where}: {errs} socket errors/timeouts{detail} and {bad} non-2xx "
                              f"responses in {reqs:,} requests")
        if any(r.get("short_responses") for r in runs):
            self.flags.append(f"{where}: responses shorter than the expected body")
        noisy = max((r.get("foreign_cpu_pct") or 0 for r in runs), default=0)
        n = self.noise.setdefault(wl, [0, 0, 0.0])
        n[0] += 1
        n[1] += noisy > NOISY_PCT
        n[2] = max(n[2], noisy)

    def runs(self, wl, srv, phase, x):
        return [r for r in self._runs.get((wl, srv, phase, x), []) if not r.get("error")]

    def closed(self, wl, srv, conc):
        rs = self.runs(wl, srv, "closed", conc)
        if not rs:
            return None
        rps = [r["rps"] for r in rs]
        return {"rps": med(rps), "min": min(rps), "max": max(rps), "n": len(rs),
                "cpu_us": med([r.get("server_cpu_us_per_req") for r in rs]),
                "p99": med([r["lat_ms"]["p99"] for r in rs]),
                "foreign": max((r.get("foreign_cpu_pct") or 0) for r in rs)}

    def best(self, wl, srv):
        pts = [(self.closed(wl, srv, c), c) for c in self.conc]
        pts = [(p["rps"], c) for p, c in pts if p]
        return max(pts) if pts else (None, None)

    def open(self, wl, srv, frac):
        rs = self.runs(wl, srv, "open", frac)
        if not rs:
            return None
        out = {p: med([r["lat_ms"].get(p) for r in rs]) for p in PCTS}
        out["rps"] = med([r["rps"] for r in rs])
        out["rate"] = rs[0].get("rate")
        out["n"] = len(rs)
        out["requests"] = med([r.get("requests") for r in rs])
        out["overloaded"] = bool(out["rate"] and out["rps"] < 0.95 * out["rate"])
        return out

    def ceiling(self):
        return self.best("hello", "ceiling")[0]

    def floor(self, wl):
        f = self.res.get("floors", {}).get(wl, {})
        cpp, py = f.get("cpp") or {}, f.get("python") or {}
        if cpp.get("ns_per_call"):
            return cpp["ns_per_call"], cpp.get("cpu_ns_per_call") or py.get("cpu_ns_per_call"), "C++"
        if py.get("ns_per_call"):
            return py["ns_per_call"], py.get("cpu_ns_per_call"), "Python"
        return None, None, None

    def limit(self, wl):
        """(limit rps, how) for a workload: HTTP ceiling plus one WSGI call per request."""
        ceil = self.ceiling()
        wall, cpu, src = self.floor(wl)
        if not ceil or not wall:
            return None, None
        cfg = self.meta.get("config", {})
        workers, threads = cfg.get("workers", 1), cfg.get("threads", 1)
        par = max(1, min(workers, count_cpus(self.meta.get("machine", {}).get("server_cpus"))
                         or workers))
        if wl == "io" and cpu:
            # the sleep dominates: take the least-disturbed wall time of the two floors
            f = self.res.get("floors", {}).get(wl, {})
            walls = [(f.get(k) or {}).get("ns_per_call") for k in ("cpp", "python")]
            wall = min(w for w in walls if w)
            cpu_limit = 1 / (1 / ceil + cpu * 1e-9 / par)
            wait_limit = workers * threads / (wall * 1e-9)
            return min(cpu_limit, wait_limit), "min(CPU, workers×threads / wall)"
        return 1 / (1 / ceil + wall * 1e-9 / par), src


# --------------------------------------------------------------------------- plots


def plot_all(s: Summary, img_dir: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator
    except ImportError:
        return []
    img_dir.mkdir(parents=True, exist_ok=True)
    made = []
    n = len(s.workloads)
    cols = 3 if n > 2 else n
    rows = (n + cols - 1) // cols
    if not n:
        return []

    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
    for ax, wl in zip(axes.flat, s.workloads):
        for srv in s.servers:
            xs, ys = [], []
            for c in s.conc:
                p = s.closed(wl, srv, c)
                if p:
                    xs.append(c)
                    ys.append(p["rps"])
            if xs:
                ax.plot(xs, ys, marker="o", label=LABELS[srv], color=COLORS.get(srv),
                        linestyle="--" if srv == "ceiling" else "-")
        ax.set_xscale("log", base=2)
        ax.set_xticks(s.conc)
        ax.set_xticklabels([str(c) for c in s.conc])
        ax.set_title(f"{wl}: {WL_TITLES.get(wl, '')}", fontsize=9)
        ax.set_xlabel("concurrent connections (closed loop)")
        ax.set_ylabel("requests/s (median)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=9)
    fig.suptitle("Throughput vs concurrency (higher is better)")
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    fig.savefig(img_dir / "throughput.png", dpi=110)
    plt.close(fig)
    made.append("throughput.png")

    for frac in s.fractions:
        fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
        any_data = False
        for ax, wl in zip(axes.flat, s.workloads):
            rate = None
            for srv in s.servers:
                o = s.open(wl, srv, frac)
                if not o:
                    continue
                rate = o["rate"]
                ys = [o[p] for p in PCTS]
                if all(y is not None for y in ys):
                    any_data = True
                    ax.plot(range(len(PCTS)), ys, marker="o", color=COLORS.get(srv),
                            label=LABELS[srv] + (" (overloaded)" if o["overloaded"] else ""))
            ax.set_xticks(range(len(PCTS)))
            ax.set_xticklabels(PCTS)
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
            ax.set_ylabel("latency, ms (log)")
            ax.set_title(f"{wl} at {fmt_int(rate)} rps", fontsize=9)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        fig.suptitle(f"Open-loop latency at {frac:.0%} of Granian's best throughput "
                     "(oha --latency-correction; lower is better)")
        fig.tight_layout(rect=(0, 0, 1, 0.95))
        name = f"latency-{round(frac * 100)}.png"
        if any_data:
            fig.savefig(img_dir / name, dpi=110)
            made.append(name)
        plt.close(fig)
    return made


# --------------------------------------------------------------------------- markdown


def table(header: list[str], rows: list[list[str]], align: str | None = None) -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def write_report(res: dict, out: Path, results_dir: Path | None = None) -> None:
    s = Summary(res)
    meta = s.meta
    cfg = meta.get("config", {})
    out = out.resolve()
    img_dir = out.parent / out.stem  # docs/benchmarks/
    img_dir.mkdir(parents=True, exist_ok=True)
    (img_dir / "results.json").write_text(json.dumps(res, indent=1))
    images = plot_all(s, img_dir)
    rel = img_dir.name
    servers = [x for x in s.servers if x != "ceiling"]
    L: list[str] = []
    a = L.append

    a("# Benchmarks")
    a("")
    a("<!-- Generated by bench/run (bench/report.py); edit the harness, not this file. -->")
    a("")
    commit = meta.get("commit") or {}
    at = (f" at commit `{commit['sha'][:12]}`" + (" (with uncommitted changes)" if commit.get("dirty") else "")
          if commit.get("sha") else "")
    a(f"Generated by `{' '.join(meta.get('argv', ['bench/run']))}` ({meta.get('mode')} mode){at}, "
      f"started {meta.get('started')}, measurement took {meta.get('elapsed_s', 0) / 60:.1f} min "
      f"(budget printed beforehand: {meta.get('budget', {}).get('total_s', 0) / 60:.1f} min). "
      f"Raw numbers: [`{rel}/results.json`]({rel}/results.json).")
    a("")
    if meta.get("mode") == "quick":
        a("> **Quick mode**: one run per point and one concurrency; a smoke test of the harness, "
          "not numbers to quote. Run `bench/run` (full) for the real matrix.")
        a("")
    a("Speed only counts as a ratio measured in the same run on the same machine: every server "
      "below ran the same app files, with the same workers and threads, interleaved point by "
      "point, in one run of the harness.")
    a("")

    # ---- summary
    a("## Summary")
    a("")
    a("Best closed-loop throughput per server (median requests/s at its best concurrency, "
      "concurrency in brackets):")
    a("")
    rows = []
    for wl in s.workloads:
        row = [f"**{wl}**"]
        for srv in servers:
            st = res["status"].get(wl, {}).get(srv, "")
            rps, c = s.best(wl, srv)
            row.append(f"{fmt_int(rps)} (c={c})" if rps else ("n/a" if st != "ok" else "failed"))
        rows.append(row)
    L += table(["workload"] + [LABELS[x] for x in servers], rows)

    for base, title in (("granian", "Granian"), ("oldstack", "the old stack")):
        a(f"Throughput ratio vs {title} (best vs best; >1 means faster than {title}):")
        a("")
        rows = []
        for wl in s.workloads:
            b = s.best(wl, base)[0]
            rows.append([f"**{wl}**"] + [fmt_ratio(s.best(wl, srv)[0], b) for srv in servers])
        L += table(["workload"] + [LABELS[x] for x in servers], rows)

    top = s.conc[-1] if s.conc else None
    a(f"Server CPU time per request at c={top} (µs, all the server's processes, from /proc; lower "
      "is better; ratio vs Granian in brackets). Other processes on the machine change how "
      "much CPU a server gets, not what each request costs, so this is the steadiest number "
      "on a shared machine:")
    a("")
    rows = []
    for wl in s.workloads:
        g = s.closed(wl, "granian", top)
        row = [f"**{wl}**"]
        for srv in servers:
            p = s.closed(wl, srv, top)
            if not p or not p["cpu_us"]:
                row.append("n/a")
                continue
            row.append(f"{p['cpu_us']:,.1f} ({fmt_ratio(p['cpu_us'], g['cpu_us'] if g else None)})")
        rows.append(row)
    L += table(["workload"] + [LABELS[x] for x in servers], rows)

    if s.fractions:
        hi = max(s.fractions)
        a(f"p99 latency in the open-loop run at {hi:.0%} of Granian's best throughput, in ms "
          "(ratio vs Granian in brackets, <1 means lower latency than Granian; † = could not "
          "keep up with the offered rate):")
        a("")
        rows = []
        for wl in s.workloads:
            g = s.open(wl, "granian", hi)
            row = [f"**{wl}**"]
            for srv in servers:
                o = s.open(wl, srv, hi)
                if not o or o["p99"] is None:
                    row.append("n/a")
                    continue
                r = fmt_ratio(o["p99"], g["p99"] if g else None)
                row.append(f"{fmt_ms(o['p99'])} ({r}){' †' if o['overloaded'] else ''}")
            rows.append(row)
        L += table(["workload"] + [LABELS[x] for x in servers], rows)

    # ---- efficiency
    a("## Efficiency vs the limit")
    a("")
    ceil = s.ceiling()
    a("The limit for a workload is what a server could do if it added nothing between the "
      "socket and the app: **(a) the HTTP ceiling**, appserver answering a fixed 1 KiB response "
      "entirely in C++ with the same loop and parser and no Python (best closed-loop rps of "
      "`appserver-bench-ceiling`, measured in the hello sweep), and **(b) the Python floor** "
      "`t_python`, the cost of one WSGI call of the same app, environ included, measured "
      "in-process in a tight loop (`appserver-bench-pyfloor` when built, else `bench/pyfloor.py`). "
      "limit = 1 / (1/ceiling + t_python); efficiency = measured best rps / limit. For `io` the "
      "10 ms sleep releases the GIL, so the limit is min(1/(1/ceiling + t_cpu), "
      "workers×threads / t_wall). The ceiling is a 1 KiB response, so for `upload` and `stream` "
      "(1 MiB each way) the limit is optimistic.")
    a("")
    a(f"HTTP ceiling: **{fmt_int(ceil)} rps**" if ceil else
      "HTTP ceiling: **n/a** (appserver-bench-ceiling not available in this run), so limits and "
      "efficiencies are n/a; the Python floor is still reported.")
    a("")
    rows = []
    for wl in s.workloads:
        wall, cpu, src = s.floor(wl)
        f = res.get("floors", {}).get(wl, {})
        py = (f.get("python") or {}).get("ns_per_call")
        cpp = (f.get("cpp") or {}).get("ns_per_call")
        lim, how = s.limit(wl)
        row = [f"**{wl}**", f"{cpp / 1e3:,.1f}" if cpp else "n/a",
               f"{py / 1e3:,.1f}" if py else "n/a",
               f"{cpu / 1e3:,.1f}" if cpu else "n/a", fmt_int(lim)]
        for srv in servers:
            b = s.best(wl, srv)[0]
            row.append(f"{b / lim:.0%}" if b and lim else "n/a")
        rows.append(row)
    L += table(["workload", "t_python C++ (µs)", "t_python Python (µs)", "CPU per call (µs)",
                "limit (rps)"] + [f"{LABELS[x]} eff." for x in servers], rows)

    # ---- per workload
    a("## Results per workload")
    a("")
    a("Closed loop: `wrk -t1 -cN`, cells are median requests/s over the runs, with the "
      "min–max range. *CPU/req* is the server's own CPU time (all its processes, from "
      "/proc) per request at the highest concurrency: it is the cost that matters once "
      "the server core is saturated. Open loop: `oha -q RATE --latency-correction`, latencies "
      "in ms measured from each request's scheduled send time (no coordinated omission), "
      "median over the runs.")
    a("")
    if "throughput.png" in images:
        a(f"![throughput vs concurrency]({rel}/throughput.png)")
        a("")
    for wl in s.workloads:
        a(f"### {wl}: {WL_TITLES.get(wl, '')}")
        a("")
        rows = []
        for srv in s.servers:
            st = res["status"].get(wl, {}).get(srv)
            if st is None:
                continue
            row = [LABELS[srv]]
            if st != "ok":
                rows.append(row + [st.replace("|", "/")[:120]] + [""] * len(s.conc))
                continue
            for c in s.conc:
                p = s.closed(wl, srv, c)
                row.append(f"{fmt_int(p['rps'])} ({fmt_int(p['min'])}–{fmt_int(p['max'])})"
                           if p else "n/a")
            p = s.closed(wl, srv, s.conc[-1]) if s.conc else None
            row.append(f"{p['cpu_us']:,.1f}" if p and p["cpu_us"] else "n/a")
            rows.append(row)
        L += table(["server"] + [f"c={c}" for c in s.conc] + ["CPU/req µs"], rows)
        orates = res.get("open_rates", {}).get(wl)
        if orates:
            src = LABELS.get(orates["base_server"])
            how = ""
            if orates.get("oha_closed_rps"):
                how = (f": the lower of its best under wrk ({fmt_int(orates.get('wrk_best_rps'))}) "
                       f"and under oha closed loop at the open-loop connection count "
                       f"({fmt_int(orates['oha_closed_rps'])})")
            a(f"Open loop (rates are fractions of {src}'s best, {fmt_int(orates['base_rps'])} rps"
              f"{how}; † = achieved < 95% of the offered rate: the server fell behind and its "
              "queue grew for the whole run):")
            a("")
            rows = []
            for frac in s.fractions:
                for srv in servers:
                    o = s.open(wl, srv, frac)
                    if not o:
                        continue
                    rows.append([f"{frac:.0%}", LABELS[srv], fmt_int(o["rate"]),
                                 fmt_int(o["rps"]) + (" †" if o["overloaded"] else "")]
                                + [fmt_ms(o[p]) for p in PCTS])
            L += table(["load", "server", "offered rps", "achieved rps"] + [f"{p} ms" for p in PCTS],
                       rows, "llrrrrrr")
    for frac in s.fractions:
        name = f"latency-{round(frac * 100)}.png"
        if name in images:
            a(f"![latency percentiles at {frac:.0%}]({rel}/{name})")
            a("")

    # ---- memory
    a("## Memory (RSS)")
    a("")
    a("RSS per worker = the largest resident set among the processes that run the Python app "
      "(children of the master; the single process where there is no master), in MiB. *Idle* is "
      "after start-up and one request; *load* is the peak sampled every 0.2 s during the "
      "closed-loop sweep. *Total* adds every process the server started (master, workers; "
      "nginx and haproxy for the old stack). Forked workers share pages with their master, so "
      "totals overcount shared memory.")
    a("")
    rows = []
    for srv in servers:
        for wl in s.workloads:
            m = res.get("rss", {}).get(wl, {}).get(srv)
            if not m:
                continue
            rows.append([LABELS[srv], wl, str(m.get("workers", "")),
                         f"{m['idle_worker_kib'] / 1024:.1f}",
                         f"{m.get('load_worker_kib', 0) / 1024:.1f}",
                         f"{m['idle_total_kib'] / 1024:.1f}",
                         f"{m.get('load_total_kib', 0) / 1024:.1f}"])
    L += table(["server", "workload", "workers", "worker idle", "worker load", "total idle",
                "total load"], rows, "llrrrrr")

    # ---- setup
    mach = meta.get("machine", {})
    a("## Machine and method")
    a("")
    a(f"- CPU: {mach.get('cpu')} × {mach.get('cpus')} ({mach.get('virtualization')}), "
      f"memory {mach.get('memory')}, {mach.get('os')}, kernel {mach.get('kernel')}.")
    la0 = mach.get("loadavg_at_start") or [0, 0, 0]
    la1 = meta.get("loadavg_at_end") or [0, 0, 0]
    busy = mach.get("busy_pct_before_start")
    a(f"- Load average at start {la0[0]:.2f}, at end {la1[0]:.2f}"
      + (f"; CPU in use by other processes in the second before the run: {busy:.0f}%."
         if busy is not None else "."))
    a(f"- Pinning (taskset): every server process on CPU {mach.get('server_cpus')}, the load "
      f"generator on CPU {mach.get('client_cpus')}. On this 2-core machine that keeps the load "
      "generator from competing with the server for its core; for the old stack nginx, haproxy "
      "and uWSGI share the server core, i.e. the stack gets the same CPU as every other server.")
    a(f"- Every server: {cfg.get('workers')} worker process(es) × {cfg.get('threads')} Python "
      "threads (Granian `--blocking-threads`, gunicorn `--threads`, uWSGI `--threads`), listen "
      "backlog 2048, access logs off, HTTP/1.1 with keep-alive except uWSGI `--http-socket`, "
      "which closes the connection after each response (the load generator reconnects; that is "
      "how that mode works). In the old stack nginx keeps connections to haproxy alive and "
      "haproxy queues requests in front of uWSGI with `maxconn` = workers × threads.")
    a(f"- Closed loop: concurrency {cfg.get('conc')}, {cfg.get('runs')} run(s) of "
      f"{cfg.get('duration_s')} s per point after a {cfg.get('warmup_s')} s warm-up of each server "
      "at that point's concurrency; within a point the servers run A B C …, then the next round "
      "starts one server later (rotation), so drift hits all alike. Median reported.")
    a(f"- Open loop: rates at {', '.join(f'{f:.0%}' for f in cfg.get('open_fractions', []))} of "
      "Granian's best throughput for that workload (the lower of its best closed-loop median "
      "under wrk and its closed-loop rate under oha itself at the open-loop connection count, "
      "since oha costs more per request than wrk and must be able to offer the rate), "
      f"{cfg.get('runs')} run(s) of "
      f"{cfg.get('open_duration_s')} s after a {cfg.get('open_warmup_s')} s warm-up at the rate, "
      f"`-c {cfg.get('open_connections')}`, same interleaving. oha's `--latency-correction` "
      "measures each request from the time the schedule says it should have been sent. Requests "
      "still in flight at the end are waited for (`-w`); a server that cannot keep up is "
      "marked †: its latencies then reflect a queue growing for the whole run.")
    fp = [r.get("foreign_cpu_pct") for r in res.get("runs", []) if r.get("foreign_cpu_pct") is not None]
    sp = [r.get("steal_pct") for r in res.get("runs", []) if r.get("steal_pct") is not None]
    if fp:
        a(f"- Noise: CPU used by anything but the server and the load generator during a run was "
          f"median {statistics.median(fp):.1f}%, max {max(fp):.1f}% of the machine; "
          f"steal median {statistics.median(sp) if sp else 0:.1f}%, max {max(sp) if sp else 0:.1f}%.")
    a("")
    a("### Versions")
    a("")
    L += table(["component", "version"],
               [[k, str(v).replace("\n", " ").replace("|", "/")]
                for k, v in meta.get("versions", {}).items()], "ll")
    a("### Exact commands")
    a("")
    a("Ports are picked free at run time; `taskset -c <cpus>` prefixes every command.")
    a("")
    a("```")
    cmds = meta.get("commands", {})
    for srv in ORDER:
        keys = [k for k in cmds if k.split("/")[0] == srv]
        if not keys:
            continue
        key = f"{srv}/hello" if f"{srv}/hello" in keys else sorted(keys)[0]
        a(f"# {LABELS.get(srv, srv)} ({key.split('/')[1]}"
          + ("" if srv == "ceiling" else "; the other workloads change only the module:attr")
          + ")")
        for argv in cmds[key]:
            a(argv)
    a("")
    for key, cmd in sorted(meta.get("loadgen_commands", {}).items()):
        a(f"# load: {key}")
        a(cmd)
    a("```")
    a("")
    for name, text in sorted(meta.get("configs", {}).items()):
        a(f"<details><summary>{name} (old stack)</summary>")
        a("")
        a("```")
        a(text.rstrip())
        a("```")
        a("")
        a("</details>")
        a("")
    a("Python floor commands:")
    a("")
    a("```")
    for wl in s.workloads:
        f = res.get("floors", {}).get(wl, {})
        for k in ("cpp", "python"):
            cmd = (f.get(k) or {}).get("command")
            if cmd:
                a(" ".join(cmd))
    a("```")
    a("")

    # ---- notes
    a("## Notes and flags")
    a("")
    notes = []
    for wl in s.workloads:
        for srv, st in res.get("status", {}).get(wl, {}).items():
            if st != "ok":
                notes.append(f"{wl} / {LABELS.get(srv, srv)}: {st}")
    for wl in s.workloads:
        for k in ("cpp", "python"):
            e = (res.get("floors", {}).get(wl, {}).get(k) or {}).get("error")
            if e:
                notes.append(f"Python floor ({k}) for {wl}: {e}")
    for wl in s.workloads:
        f = res.get("floors", {}).get(wl, {})
        cpp, py = (f.get("cpp") or {}).get("ns_per_call"), (f.get("python") or {}).get("ns_per_call")
        if cpp and py and cpp > 1.5 * py and cpp - py > 2000:
            notes.append(f"Python floor for {wl}: appserver's in-process call costs "
                         f"{cpp / 1e3:,.1f} µs against {py / 1e3:,.1f} µs for the same app "
                         f"called from Python ({cpp / py:.1f}×); the difference is appserver's own "
                         "per-call work (environ, input, response handling), not the app's")
    notes += s.flags + s.notes
    if meta.get("interrupted"):
        notes.insert(0, f"The run was {meta['interrupted']}: results are partial.")
    if not notes:
        notes = ["No errors, no non-2xx responses, every server answered every workload."]
    # collapse long repeated lines (e.g. the same n/a reason for each workload)
    seen, uniq = set(), []
    for n in notes:
        if n not in seen:
            seen.add(n)
            uniq.append(n)
    L += [f"- {n}" for n in uniq]
    a("")
    # Lab notes (profiles, instruction counts, what a change moved) stay beside the harness:
    # this report holds only what this run measured.
    a("Engineering notes behind these numbers (profiles, per-request instruction counts, the "
      "cost of metrics and access logs, what changes moved) are kept beside the harness: "
      "[bench/analysis.md](../bench/analysis.md), "
      "[bench/observability.md](../bench/observability.md).")
    a("")
    a("Regenerate with `bench/run` (full, about 20 min) or `bench/run --quick` (about 3 min); see "
      "`bench/README.md`.")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(L) + "\n")
    if results_dir and Path(results_dir).resolve() != Path(img_dir).resolve():
        for img in images:
            shutil.copy(img_dir / img, results_dir / img)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs"
                    / "benchmarks.md")
    args = ap.parse_args(argv)
    write_report(json.loads(args.results.read_text()), args.out, args.results.parent)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
