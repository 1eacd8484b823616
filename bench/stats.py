#!/usr/bin/env python3
"""Aggregates repeated benchmark figures into median, spread and ratios.

The one place that does it, for bench/cluster.sh, bench/service.sh,
scripts/run-bench.sh, scripts/run-bench-provisioning.sh and
scripts/run-bench-cni.sh.

Input (stdin): BENCH lines as the benchmarks print them, after a line
saying which repetition they belong to:

    REP <rep> [<tree>]
    BENCH <name> <value> <unit> [key=value ...] [(free text) ...]

With a tree (e.g. "base": another checkout's binaries) the names that follow
become "<tree>.<name>". Other lines are ignored. A name printed more than
once in one repetition (provisioning's background_rate, once per level) is
a figure per occurrence, printed under the same name.

baseline=A[,B...] names figures of the same repetition and tree: A takes the
place of one dot-separated part of the name, or of the part between a dot
and a "_" suffix: cluster.mizar.tcp_rr_us with baseline=vxlan is compared
with cluster.vxlan.tcp_rr_us, cni.add_adopting_p50 with baseline=add with
cni.add_p50, provisioning.h3.n1000.provisioned_p50 with baseline=n0 with
provisioning.h3.n0.provisioned_p50. A ratio= printed by the benchmark is
dropped: ratios are recomputed here, per repetition. A percentile key
(p99=Y) is a figure of its own (cni.add_p50 -> cni.add_p99), compared with
the same percentile of the baseline.

Output, per figure, untagged figures first, each in the order first seen:

    BENCH <name> <median> <unit> spread=<min>..<max> reps=<N>
        [ratio=<median> (<min>..<max>) baseline=A] [vs_B=<median> (<min>..<max>) ...]
        [key=value ...] [(free text)]

all on one line. Each ratio is the figure over its baseline within one
repetition; the median, min and max are over those per-repetition ratios.
--versus TREE adds to every untagged figure vs_TREE, its ratio to TREE's
same figure. Other keys are kept: key=v when the same in every repetition,
key=min..max when not. Values that are not finite numbers are left out
(reps= counts the rest), as are ratios over zero.
"""
import argparse
import math
import re
import statistics
import sys

PERCENTILE = re.compile(r"^p\d+$")
TEXT = re.compile(r"\([^)]*\)")


def fmt(x):
    """Three significant digits, never rounding away integer digits."""
    if x == 0:
        return "0"
    return "%.*f" % (max(0, 2 - math.floor(math.log10(abs(x)))), x)


def number(s):
    try:
        v = float(s)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def percentile_name(name, key):
    m = re.match(r"^(.*)_p\d+$", name)
    return f"{m.group(1)}_{key}" if m else f"{name}_{key}"


def resolve(name, short, names):
    """The figure among `names` that `short` names as the baseline of `name`."""
    starts = [0] + [i + 1 for i, c in enumerate(name) if c == "."]
    ends = [i for i, c in enumerate(name) if c in "._"] + [len(name)]
    for s in starts:
        for e in ends:
            candidate = name[:s] + short + name[e:]
            if e > s and candidate != name and candidate in names:
                return candidate
    return None


class Figure:
    def __init__(self, fid, name, tree, unit, text, baselines):
        self.id = fid               # name, or name#N for its Nth time in a repetition
        self.name = name            # as printed
        self.tree = tree
        self.unit = unit
        self.text = text
        self.baselines = baselines  # short names as printed; "TREE:" for --versus
        self.values = {}            # rep -> value
        self.keys = {}              # key -> its values over the repetitions


def read(lines, versus):
    """The figures by id (name, then name#2, ... for repeats within a
    repetition), untagged first; and the names each (rep, tree) printed."""
    figures, seen = {}, {}
    rep, tree = "0", ""
    for line in lines:
        f = line.split()
        if f[:1] == ["REP"] and len(f) >= 2:
            rep, tree = f[1], (f[2] if len(f) > 2 else "")
            continue
        if f[:1] != ["BENCH"] or len(f) < 4:
            continue
        words = TEXT.sub(" ", line).split()
        name = (tree + "." if tree else "") + words[1]
        samples, keys, shorts = [(name, number(words[2]))], {}, []
        for k, _, v in (w.partition("=") for w in words[4:] if "=" in w):
            if PERCENTILE.match(k):
                samples.append((percentile_name(name, k), number(v)))
            elif k == "baseline":
                shorts = [b for b in v.split(",") if b]
            elif k != "ratio":
                keys[k] = v
        names = seen.setdefault((rep, tree), {})
        for i, (n, v) in enumerate(samples):
            names[n] = names.get(n, 0) + 1
            fid = n if names[n] == 1 else f"{n}#{names[n]}"
            fig = figures.get(fid)
            if fig is None:
                extra = [versus + ":"] if versus and not tree else []
                fig = figures[fid] = Figure(fid, n, tree, words[3], " ".join(TEXT.findall(line)), shorts + extra)
            if v is not None:
                fig.values[rep] = v
            if i == 0:
                for k, kv in keys.items():
                    fig.keys.setdefault(k, []).append(kv)
    return sorted(figures.values(), key=lambda fig: fig.tree != ""), figures, seen


def ratios(fig, b, figures, seen):
    out = []
    for rep, v in fig.values.items():
        if b.endswith(":"):   # --versus: the other tree's same figure
            other = figures.get(f"{b[:-1]}.{fig.id}")
        else:
            other = figures.get(resolve(fig.name, b, seen.get((rep, fig.tree), {})))
        base = other.values.get(rep) if other else None
        if base:
            out.append(v / base)
    return out


def span(values, f):
    return f"{f(statistics.median(values))} ({f(min(values))}..{f(max(values))})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--versus", metavar="TREE", help="add each untagged figure's ratio to TREE's same figure")
    args = ap.parse_args()
    ordered, figures, seen = read(sys.stdin, args.versus)
    for fig in ordered:
        values = list(fig.values.values())
        if not values:
            print(f"BENCH {fig.name} nan {fig.unit} reps=0")
            continue
        out = [f"BENCH {fig.name} {fmt(statistics.median(values))} {fig.unit} "
               f"spread={fmt(min(values))}..{fmt(max(values))} reps={len(values)}"]
        first = True
        for b in fig.baselines:
            r = ratios(fig, b, figures, seen)
            if not r:
                continue
            if first and not b.endswith(":"):
                out.append(f"ratio={span(r, '{:.2f}'.format)} baseline={b}")
                first = False
            else:
                out.append(f"vs_{b.rstrip(':')}={span(r, '{:.2f}'.format)}")
        for k, vs in fig.keys.items():
            nums = [number(v) for v in vs]
            if len(set(vs)) == 1:
                out.append(f"{k}={vs[0]}")
            elif None not in nums:
                out.append(f"{k}={fmt(min(nums))}..{fmt(max(nums))}")
        if fig.text:
            out.append(fig.text)
        print(" ".join(out))


if __name__ == "__main__":
    main()
