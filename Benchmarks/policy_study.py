#!/usr/bin/env python3
"""Cache policies against Belady's MIN on a routing fixture (docs/design.md §4).

Replays a routing trace (Tests/Fixtures/routing/demo-*.txt: per token, each layer's top-k
experts) through re-implementations of SwiftMoE's policies (LRU, LFU, EdgeMoE, nextuse, dlfu,
auto = shadow caches of them) plus LeCaR and foresight oracles (keep every expert requested in
the next w requests), one request at a time (no pinning), and prints each policy's hit rate as a
share of MIN's at 10, 25 and 50% of the experts. The Swift policies are checked against MIN on
the same fixtures by Tests/ExpertStoreTests/AutoPolicyTests.swift; this script is the study
behind the choice, seconds to run:

  python3 Benchmarks/policy_study.py [--fixture Tests/Fixtures/routing/demo-validation.txt ...]
      [--shares 10,25,50] [--half-lives 128,256,512,1024]
"""
import argparse
import math
import os
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(path):
    layers = k = None
    keys = []
    for line in open(path):
        if line.startswith("#"):
            f = line.split()
            layers, k = int(f[2]), int(f[6])
            experts = int(f[4])
            continue
        for i, e in enumerate(map(int, line.split())):
            keys.append((i // k, e))
    return keys, layers, experts


def belady(keys, cap):
    nxt, seen = [0] * len(keys), {}
    for i in range(len(keys) - 1, -1, -1):
        nxt[i] = seen.get(keys[i], math.inf)
        seen[keys[i]] = i
    res, hits = {}, 0
    for i, key in enumerate(keys):
        if key in res:
            hits += 1
        elif len(res) >= cap:
            del res[max(res, key=lambda x: res[x])]
        res[key] = nxt[i]
    return hits / len(keys)


def run(keys, cap, pol):
    res, hits = set(), 0
    for i, key in enumerate(keys):
        pol.access(i, key)
        if key in res:
            hits += 1
            continue
        if len(res) >= cap:
            res.remove(pol.victim(i, list(res)))
        res.add(key)
    return hits / len(keys)


class LRU:
    def __init__(s): s.t = {}
    def access(s, i, k): s.t[k] = i
    def victim(s, i, c): return min(c, key=lambda x: s.t.get(x, -1))


class LFU:
    def __init__(s): s.n, s.t = defaultdict(float), {}
    def access(s, i, k): s.n[k] += 1; s.t[k] = i
    def victim(s, i, c): return min(c, key=lambda x: (s.n[x], s.t[x]))


class DLFU:
    """Counts halve every `h` requests (SwiftMoE's DecayedLFUPolicy)."""
    def __init__(s, h): s.n, s.last, s.t, s.h = {}, {}, {}, h
    def val(s, k, i): return s.n.get(k, 0) * 0.5 ** ((i - s.last.get(k, i)) / s.h)
    def access(s, i, k): s.n[k] = s.val(k, i) + 1; s.last[k] = i; s.t[k] = i
    def victim(s, i, c): return min(c, key=lambda x: (s.val(x, i), s.t[x]))


class Edge:
    def __init__(s, L): s.L, s.n, s.t, s.cur = L, defaultdict(float), {}, 0
    def access(s, i, k): s.n[k] += 1; s.t[k] = i; s.cur = k[0]
    def victim(s, i, c):
        def score(x):
            d = (x[0] - s.cur) % s.L
            return (math.inf if d == 0 else s.n[x] / d, s.t[x])
        return min(c, key=score)


class NextUse:
    """Expected distance d + L(1-p)/p with p the expert's share of its layer's turns
    (SwiftMoE's NextUsePolicy without its transition term)."""
    def __init__(s, L): s.L, s.n, s.turn, s.cl, s.t, s.cur = L, defaultdict(float), defaultdict(float), None, {}, 0
    def access(s, i, k):
        if k[0] != s.cl:
            s.turn[k[0]] += 1
            s.cl = k[0]
        s.n[k] += 1; s.t[k] = i; s.cur = k[0]
    def victim(s, i, c):
        def score(x):
            d = (x[0] - s.cur) % s.L
            if d == 0:
                return (-math.inf, 0)
            p = min(max((s.n[x] + .125) / (s.turn[x[0]] + 1), 1e-6), .999)
            return (d + s.L * (1 - p) / p, -s.t[x])
        return max(c, key=score)


class Auto:
    """Shadow caches of the candidates; the real cache follows the most decayed shadow hits."""
    def __init__(s, makers, window=2048):
        s.live = [m() for m in makers]; s.shadow = [m() for m in makers]
        s.res = [set() for _ in makers]; s.score = [0.0] * len(makers); s.cap = None; s.decay = 1 - 1 / window
    def access(s, i, k):
        for j in range(len(s.live)):
            s.live[j].access(i, k); s.shadow[j].access(i, k); s.score[j] *= s.decay
            if k in s.res[j]:
                s.score[j] += 1
                continue
            while s.cap is not None and len(s.res[j]) >= s.cap:
                s.res[j].remove(s.shadow[j].victim(i, list(s.res[j])))
            s.res[j].add(k)
    def victim(s, i, c):
        s.cap = len(c) + 1
        j = max(range(len(s.score)), key=lambda j: (s.score[j], -j))
        return s.live[j].victim(i, c)


class LeCaR:
    """LRU or LFU chosen by regret weights (Vietri et al., 2018), history of one cache size."""
    def __init__(s, lr=0.45):
        s.p, s.w, s.h, s.lr, s.cap = [LRU(), LFU()], [.5, .5], [{}, {}], lr, 1
    def access(s, i, k):
        for j in (0, 1):
            if k in s.h[j]:
                r = (0.005 ** (1 / s.cap)) ** (i - s.h[j].pop(k))
                s.w[j] *= math.exp(-s.lr * r)
                t = sum(s.w); s.w = [x / t for x in s.w]
        for p in s.p:
            p.access(i, k)
    def victim(s, i, c):
        s.cap = len(c) + 1
        j = 0 if s.w[0] >= s.w[1] else 1
        v = s.p[j].victim(i, c)
        s.h[j][v] = i
        for h in s.h:
            if len(h) > s.cap:
                del h[min(h, key=h.get)]
        return v


class Oracle:
    """Keeps every expert requested in the next `w` requests, else defers to `base`."""
    def __init__(s, keys, w, base): s.keys, s.w, s.b = keys, w, base
    def access(s, i, k): s.b.access(i, k)
    def victim(s, i, c):
        future = set(s.keys[i + 1:i + 1 + s.w])
        return s.b.victim(i, [x for x in c if x not in future] or c)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fixture", nargs="+", default=[os.path.join(ROOT, f"Tests/Fixtures/routing/demo-{n}.txt") for n in ("calibration", "validation")])
    ap.add_argument("--shares", default="10,25,50")
    ap.add_argument("--half-lives", default="128,256,512,1024")
    args = ap.parse_args()
    for path in args.fixture:
        keys, L, E = load(path)
        policies = {
            "auto": lambda: Auto([lambda: NextUse(L), LFU, lambda: Edge(L), LRU, lambda: DLFU(256)]),
            "auto before dlfu": lambda: Auto([lambda: NextUse(L), LFU, lambda: Edge(L), LRU]),
            "lru": LRU, "lfu": LFU, "edgemoe": lambda: Edge(L), "nextuse": lambda: NextUse(L),
            "lecar": LeCaR,
        }
        for h in map(int, args.half_lives.split(",")):
            policies[f"dlfu {h}"] = lambda h=h: DLFU(h)
        for w in (4, 8, 16):
            policies[f"oracle next {w} + dlfu"] = lambda w=w: Oracle(keys, w, DLFU(256))
        print(f"{os.path.basename(path)}: {L} layers x {E} experts, {len(keys)} requests")
        for share in map(int, args.shares.split(",")):
            cap = round(L * E * share / 100)
            m = belady(keys, cap)
            cells = ", ".join(f"{n} {100 * run(keys, cap, p()) / m:.1f}%" for n, p in policies.items())
            print(f"  {share}% ({cap} experts): MIN {100 * m:.1f}% hits; of MIN: {cells}")


if __name__ == "__main__":
    main()
