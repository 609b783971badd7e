#!/usr/bin/env python3
"""Module dependency cycles in Rust crates, read from `use crate::...`, `crate::...` paths and
`super::...` paths in the source (text only: nothing is compiled).

Usage: modcycles.py [--max-lines N] CRATE_SRC_DIR...
  e.g. scripts/modcycles.py circuitd/src circuit-sdk/src circuit-cli/src

scripts/check.sh runs it on every crate of the workspace: a new cycle fails the check.

For each crate it prints every cycle among the top-level modules (api -> broker -> api) and
among sibling files of one folder (api/chans.rs -> api/dispatch.rs -> api/chans.rs), then,
with --max-lines, every file whose code outside `#[cfg(test)]` is longer than N lines.
Exit status: 1 if it found a cycle or a long file, else 0.
"""
import os
import re
import sys

USE_RE = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
GROUP_RE = re.compile(r"\buse\s+(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\}", re.S)


def module_of(src, path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


def strip_tests(text):
    """Drop `#[cfg(test)] mod ... { ... }` blocks and comments."""
    text = re.sub(r"//[^\n]*", "", text)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def crate_graph(src):
    files = {}
    for root, _, names in os.walk(src):
        for n in names:
            if n.endswith(".rs"):
                p = os.path.join(root, n)
                files[module_of(src, p)] = p
    edges = {}
    lines = {}
    for mod, path in files.items():
        code = strip_tests(open(path, encoding="utf-8", errors="replace").read())
        lines[path] = sum(1 for l in code.splitlines() if l.strip())
        targets = set()
        refs = [(b, p) for b, p in USE_RE.findall(code)]
        for b, prefix, inner in GROUP_RE.findall(code):
            for item in re.split(r"[,\s]+", inner):
                item = item.split("::")[0].strip()
                if item and item not in ("self", "*") and re.match(r"[A-Za-z_]", item):
                    refs.append((b, prefix + "::" + item))
        for base, tail in refs:
            parts = [p for p in tail.split("::") if p]
            if base == "crate":
                full = parts
            else:
                # `super` is the parent of this file's module (a mod.rs names its folder)
                here = list(mod[:-1])
                while parts and parts[0] == "super":
                    here, parts = here[:-1], parts[1:]
                full = here + parts
            # resolve to the longest module prefix that is a file
            for k in range(len(full), 0, -1):
                if tuple(full[:k]) in files:
                    t = tuple(full[:k])
                    if t != mod:
                        targets.add(t)
                    break
        edges[mod] = targets
    return files, edges, lines


def cycles(nodes, edges):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in nodes:
        if v not in index:
            visit(v)
    return out


def main(argv):
    max_lines = None
    if argv[:1] == ["--max-lines"]:
        max_lines = int(argv[1])
        argv = argv[2:]
    if not argv:
        print(__doc__.strip())
        return 2
    bad = 0
    for src in argv:
        files, edges, lines = crate_graph(src)
        # top level: collapse every module to its first segment
        top_nodes = sorted({m[:1] for m in files if m})
        top_edges = {}
        for m, ts in edges.items():
            for t in ts:
                if m[:1] and t[:1] and m[:1] != t[:1]:
                    top_edges.setdefault(m[:1], set()).add(t[:1])
        for c in cycles(top_nodes, top_edges):
            bad += 1
            print(f"{src}: top-level modules in a cycle: " + " <-> ".join("::".join(x) for x in c))
        # siblings: files with the same parent module
        parents = {}
        for m in files:
            if m:
                parents.setdefault(m[:-1], []).append(m)
        for parent, kids in parents.items():
            kidset = set(kids)
            sib = {k: {t[:len(k)] for t in edges.get(k, ()) if t[:len(k)] in kidset and t[:len(k)] != k} for k in kids}
            # an edge into a child of a sibling counts as an edge to the sibling
            for k in kids:
                for t in edges.get(k, ()):
                    if len(t) > len(parent) and t[:len(parent)] == parent:
                        s = t[:len(parent) + 1]
                        if s in kidset and s != k:
                            sib[k].add(s)
            for c in cycles(sorted(kids), sib):
                bad += 1
                where = "::".join(parent) or "crate root"
                print(f"{src}: files under {where} in a cycle: " + " <-> ".join(os.path.relpath(files[x], src) for x in c))
        if max_lines:
            for path, n in sorted(lines.items(), key=lambda x: -x[1]):
                if n > max_lines:
                    bad += 1
                    print(f"{src}: {os.path.relpath(path, src)} has {n} non-blank lines outside tests (over {max_lines})")
    if not bad:
        print("no module cycles" + (f", no file over {max_lines} lines" if max_lines else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
