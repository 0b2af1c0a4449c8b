#!/usr/bin/env python3
"""Renders bench/run.sh's raw results (one `key<TAB>value` per line) as a markdown report.

Usage: report.py RESULTS_TSV > report.md
       report.py --summary RESULTS_TSV... > summary.md   (one row of key ratios per run)

Times are medians of the recorded runs (best run in parentheses). Ratios are written so that
> 1.00x always means Berth is better: speed-ups for times, req/s quotients for throughput,
memory savings for RSS.
"""
import statistics
import sys

SERVERS = (("dist", "Distribution 2.8.2"), ("berth", "Berth"))


def load(path):
    kv = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or "\t" not in line:
                continue
            k, v = line.split("\t", 1)
            kv[k] = v
    return kv


def runs(kv, key):
    v = kv.get(key)
    if not v:
        return None
    return [float(x) for x in v.split()]


def med(xs):
    return statistics.median(xs) if xs else None


def fmt_s(xs, nbytes):
    if not xs:
        return "n/a"
    m = med(xs)
    rate = nbytes / m / 2**20 if m > 0 else 0
    best = f" (best {min(xs):.3f})" if len(xs) > 1 else ""
    return f"{m:.3f} s{best}, {rate:,.0f} MiB/s"


def fmt_kb(kb):
    return "n/a" if kb is None else f"{kb / 1024:,.1f} MiB"


def ratio(better_factor, what="faster"):
    if better_factor is None:
        return "n/a"
    return f"**{better_factor:.2f}x** {what}"


def wrk(kv, srv, ref, conns):
    v = kv.get(f"{srv}.wrk.{ref}.{conns}")
    if not v:
        return None
    d = {}
    for part in v.split():
        k, _, x = part.partition("=")
        d[k] = float(x)
    return d


def main():
    kv = load(sys.argv[1])
    nbytes = int(kv["blob.bytes"])
    size = f"{nbytes / 2**30:g} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:g} MiB"
    have = {s for s, _ in SERVERS if f"{s}.started" in kv}
    conn_list = [int(c) for c in kv.get("meta.wrk_conns", "16 64").split()]
    out = []
    w = out.append

    w(f"## Berth vs CNCF Distribution: {kv.get('meta.date', '?')}")
    w("")
    w(f"- Machine: {kv.get('meta.nproc')} CPUs, {kv.get('meta.cpu')}, sha_ni: {kv.get('meta.sha_ni')}, "
      f"{kv.get('meta.mem')} RAM, kernel {kv.get('meta.kernel')}, data on {kv.get('meta.fs')}")
    w(f"- Berth: `{kv.get('meta.berth_version', 'not run')}`; Distribution: `{kv.get('meta.dist_version', 'not run')}`; "
      f"wrk {kv.get('meta.wrk_version')}; curl {kv.get('meta.curl_version')}; {kv.get('meta.openssl_version')}")
    w(f"- Blob: {size} from /dev/urandom; {kv.get('meta.push_runs')} pushes and {kv.get('meta.pull_runs')} pulls per server "
      f"and client, {kv.get('meta.floor_runs', kv.get('meta.push_runs'))} runs of each floor "
      f"(median, best in parentheses); wrk -t2, {kv.get('meta.wrk_seconds')} s per run; "
      "clients and servers share the same CPUs over loopback")
    if "meta.pull_disk_read_mib" in kv:
        w(f"- Disk reads during the timed pulls (pgpgin): {kv['meta.pull_disk_read_mib']} MiB (0 = all served from page cache)")
    if "meta.cpu_other_s" in kv:
        w(f"- CPU time during the run: {kv['meta.cpu_busy_s']} s busy in total, of which {kv['meta.cpu_other_s']} s outside "
          f"the benchmark's own processes (other work, kernel writeback), interrupts {kv.get('meta.cpu_irq_s', '?')} s, "
          f"steal {kv['meta.cpu_steal_s']} s")
    if "meta.berth_binary" in kv:
        w(f"- Berth binary: {kv['meta.berth_binary']}; repository HEAD at run time: {kv.get('meta.berth_git', '?')}")
    if "meta.load_start" in kv:
        w(f"- Load average (1/5/15 min) at start: {kv['meta.load_start']}; at end: {kv.get('meta.load_end', '?')}")
    w("")

    floor_o = runs(kv, "floor.openssl.runs")
    floor_s = runs(kv, "floor.sha256sum.runs")
    floor = min(x for x in (med(floor_o), med(floor_s)) if x is not None) if (floor_o or floor_s) else None

    w("| Metric | Distribution 2.8.2 | Berth | Berth vs Distribution (>1 = Berth better) |")
    w("|---|---|---|---|")

    def cell(srv, text):
        return text if srv in have else "not run"

    # push
    p = {s: runs(kv, f"{s}.push.runs") for s, _ in SERVERS}
    r = med(p["dist"]) / med(p["berth"]) if p["dist"] and p["berth"] else None
    w(f"| Monolithic push, {size} (POST + PUT, wall) | {cell('dist', fmt_s(p['dist'], nbytes))} | "
      f"{cell('berth', fmt_s(p['berth'], nbytes))} | {ratio(r)} |")
    pt = {s: runs(kv, f"{s}.push.tail.runs") for s, _ in SERVERS}
    if any(pt.values()):
        def tail_txt(xs):
            return "n/a" if not xs else f"{med(xs):.3f} s" + (f" (best {min(xs):.3f})" if len(xs) > 1 else "")
        r = med(pt["dist"]) / med(pt["berth"]) if pt["dist"] and pt["berth"] and med(pt["berth"]) > 0 else None
        w(f"| ... of which: last body byte sent to response (server-side commit) | {cell('dist', tail_txt(pt['dist']))} | "
          f"{cell('berth', tail_txt(pt['berth']))} | {ratio(r, 'shorter')} |")
    # pull
    q = {s: runs(kv, f"{s}.pull.runs") for s, _ in SERVERS}
    r = med(q["dist"]) / med(q["berth"]) if q["dist"] and q["berth"] else None
    w(f"| Blob pull, {size}, `curl -o /dev/null` (wall) | {cell('dist', fmt_s(q['dist'], nbytes))} | "
      f"{cell('berth', fmt_s(q['berth'], nbytes))} | {ratio(r)} |")
    rq = {s: runs(kv, f"{s}.rawpull.runs") for s, _ in SERVERS}
    if any(rq.values()):
        r = med(rq["dist"]) / med(rq["berth"]) if rq["dist"] and rq["berth"] else None
        w(f"| Blob pull, {size}, raw socket client `bench/pull.py` (wall) | {cell('dist', fmt_s(rq['dist'], nbytes))} | "
          f"{cell('berth', fmt_s(rq['berth'], nbytes))} | {ratio(r)} |")
    # manifests
    for ref in ("tag", "digest"):
        for conns in conn_list:
            d = {s: wrk(kv, s, ref, conns) for s, _ in SERVERS}

            def txt(x):
                if not x:
                    return "n/a"
                errs = int(x["status_errors"] + x["connect_errors"] + x["read_errors"] + x["write_errors"] + x["timeouts"])
                e = f", **{errs} errors**" if errs else ""
                return f"{x['rps']:,.0f} req/s, p50 {x['p50_us'] / 1000:.2f} ms, p99 {x['p99_us'] / 1000:.2f} ms{e}"

            r = d["berth"]["rps"] / d["dist"]["rps"] if d["dist"] and d["berth"] else None
            w(f"| Manifest GET by {ref}, {conns} connections | {cell('dist', txt(d['dist']))} | "
              f"{cell('berth', txt(d['berth']))} | {ratio(r, 'req/s')} |")
    # rss
    h = {s: (float(kv[f"{s}.rss.hwm_kb"]) if f"{s}.rss.hwm_kb" in kv else None) for s, _ in SERVERS}
    r = h["dist"] / h["berth"] if h["dist"] and h["berth"] else None
    w(f"| Peak RSS over the run (VmHWM) | {cell('dist', fmt_kb(h['dist']))} | {cell('berth', fmt_kb(h['berth']))} | "
      f"{ratio(r, 'less memory')} |")
    w("")

    w("Reference points:")
    w("")
    w("| Reference | Time |")
    w("|---|---|")
    w(f"| `openssl dgst -sha256` on the same file (one core, page cache warm) | {fmt_s(floor_o, nbytes)} |")
    w(f"| `sha256sum` (coreutils) on the same file | {fmt_s(floor_s, nbytes)} |")
    w(f"| `dd bs=1M conv=fsync` of the same file to the data filesystem (write floor, not a target) | "
      f"{fmt_s(runs(kv, 'floor.fsync_copy.runs'), nbytes)} |")
    ng = runs(kv, "nginx.pull.runs")
    nv = kv.get("meta.nginx_version")
    rng = runs(kv, "nginx.rawpull.runs")
    if ng:
        w(f"| nginx {nv} (sendfile) serving the same file, `curl -o /dev/null` | {fmt_s(ng, nbytes)} |")
        if rng:
            w(f"| nginx {nv} (sendfile) serving the same file, raw socket client | {fmt_s(rng, nbytes)} |")
    else:
        w(f"| nginx serving the same file | not run ({kv.get('nginx.skipped', 'skipped')}) |")
    w("")

    # targets
    w("Targets:")
    w("")
    w("| Target | Measured | Status |")
    w("|---|---|---|")

    def status(ok):
        return "n/a" if ok is None else ("met" if ok else "**missed**")

    bp = med(p["berth"])
    if bp and floor:
        w(f"| Push within 10% of single-core sha256 time | {bp:.3f} s vs {floor:.3f} s = {bp / floor:.2f}x the hash time "
          f"(limit 1.10x) | {status(bp <= 1.10 * floor)} |")
    else:
        w("| Push within 10% of single-core sha256 time | n/a | n/a |")
    if q["dist"] and q["berth"]:
        # Judged on the raw socket client when present (curl is the bottleneck otherwise).
        parts, oks = [], []
        for label, qq, nn in (("raw client", rq, rng), ("curl", q, ng)):
            if not (qq.get("dist") and qq.get("berth")):
                continue
            r = med(qq["dist"]) / med(qq["berth"])
            txt = f"{label}: {r:.2f}x Distribution"
            ok = r >= 1.4
            if nn:
                vs = med(nn) / med(qq["berth"])
                txt += f", {vs:.2f}x nginx"
                ok = ok and vs >= 0.9
            parts.append(txt)
            oks.append(ok)
        w(f"| Pull >= 1.4x Distribution and close to nginx (read here as >= 0.9x nginx's throughput) | "
          f"{'; '.join(parts)} | {status(oks[0])}{' (judged on the raw client)' if len(oks) > 1 else ''} |")
    else:
        w("| Pull >= 1.4x Distribution and close to nginx | n/a | n/a |")
    rs = []
    for ref in ("tag", "digest"):
        for conns in conn_list:
            a, b = wrk(kv, "dist", ref, conns), wrk(kv, "berth", ref, conns)
            if a and b:
                rs.append((f"{ref}/{conns}", b["rps"] / a["rps"]))
    if rs:
        w(f"| Manifest GET >= 30x Distribution | {', '.join(f'{n}: {x:.1f}x' for n, x in rs)} | "
          f"{status(all(x >= 30 for _, x in rs))} |")
    else:
        w("| Manifest GET >= 30x Distribution | n/a | n/a |")
    if h["dist"] and h["berth"]:
        w(f"| Peak RSS <= half of Distribution's | {h['berth'] / h['dist']:.2f}x Distribution's | "
          f"{status(h['berth'] <= 0.5 * h['dist'])} |")
    else:
        w("| Peak RSS <= half of Distribution's | n/a | n/a |")

    notes = [v for k, v in sorted(kv.items()) if k.startswith("note.")]
    if notes:
        w("")
        w("Notes:")
        w("")
        for n in notes:
            w(f"- {n}")
    print("\n".join(out))


def summary(paths):
    """One line per run: the target metrics as Berth-vs-Distribution ratios."""
    print("| Run | Other CPU | Push / sha256 | Push vs Dist | Pull vs Dist (raw / curl) | Pull vs nginx (raw / curl) "
          "| Manifest GET vs Dist (min / max) | RSS Berth / Dist |")
    print("|---|---|---|---|---|---|---|---|")
    for path in paths:
        kv = load(path)

        def m(key):
            return med(runs(kv, key) or [])

        def q(a, b, fmt="{:.2f}x"):
            return fmt.format(a / b) if a and b else "n/a"

        floor = min(x for x in (m("floor.openssl.runs"), m("floor.sha256sum.runs")) if x)
        conns = [int(c) for c in kv.get("meta.wrk_conns", "16 64").split()]
        g = [wrk(kv, "berth", r, c)["rps"] / wrk(kv, "dist", r, c)["rps"]
             for r in ("tag", "digest") for c in conns if wrk(kv, "berth", r, c) and wrk(kv, "dist", r, c)]
        hd, hb = kv.get("dist.rss.hwm_kb"), kv.get("berth.rss.hwm_kb")
        print(f"| {kv.get('meta.date')} | {kv.get('meta.cpu_other_s', '?')} s "
              f"| {q(m('berth.push.runs'), floor)} | {q(m('dist.push.runs'), m('berth.push.runs'))} "
              f"| {q(m('dist.rawpull.runs'), m('berth.rawpull.runs'))} / {q(m('dist.pull.runs'), m('berth.pull.runs'))} "
              f"| {q(m('nginx.rawpull.runs'), m('berth.rawpull.runs'))} / {q(m('nginx.pull.runs'), m('berth.pull.runs'))} "
              f"| {(f'{min(g):.1f}x / {max(g):.1f}x') if g else 'n/a'} "
              f"| {q(float(hb), float(hd)) if hd and hb else 'n/a'} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--summary":
        summary(sys.argv[2:])
    else:
        main()
