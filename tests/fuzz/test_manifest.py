"""Entry point 7: the app manifest parser (lattice/app/manifest.py, docs/manifest.md).

10,000 documents, seeded: the valid manifests of examples/ and tests/app with one to four
random edits to their tree (a value replaced by one of another type, a key dropped or added, a
component duplicated, a list emptied) parsed with ``Manifest.from_dict``; and, as text through
``Manifest.from_yaml``, the same trees dumped as YAML or JSON, byte-level mutations of the real
files, random text, and named hostile documents (nesting 100,000 deep, a 5,000-digit number, a
date that does not exist, unknown tags, an alias "bomb" that expands to 387 million values, a
recursive alias). Each one parses, or raises ManifestError whose every line names where the
problem is (apiVersion, kind, metadata…, spec…, component …, or the manifest as a whole); what
parses round-trips through ``to_dict`` and JSON (what the app store writes). A hypothesis test
adds documents built from the manifest's own vocabulary (500 of them: hypothesis takes ~6 ms
per document here).
"""

from __future__ import annotations

import copy
import datetime
import json
import random
import time
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lattice.app.manifest import Manifest, ManifestError
from tests.fuzz.garbage import (
    INPUTS,
    Findings,
    check_error,
    mutate,
    rand_bytes,
    rand_str,
    rand_value,
    rng,
    unclear,
)

ROOT = Path(__file__).resolve().parents[2]
TEXTS = [p.read_text() for p in sorted((ROOT / "examples").glob("*.yaml"))] + \
    [(ROOT / "tests" / "app" / "kvcounter.yaml").read_text()]
DOCS = [yaml.safe_load(t) for t in TEXTS]
# Where an error may say the problem is: every message starts from one of these.
ANCHORS = ("apiVersion", "kind", "metadata", "spec", "component", "manifest")
VOCABULARY = ["apiVersion", "kind", "metadata", "name", "annotations", "version",
              "description", "spec", "components", "type", "properties", "image", "contract",
              "link_name", "config", "embedded", "traits", "replicas", "instances", "spread",
              "requirements", "weight", "target", "values", "actor", "capability",
              "spreadscaler", "daemonscaler", "linkdef", "core.oam.dev/v1beta1", "Application",
              "latest"]


def odd_value(r: random.Random) -> Any:
    """Values YAML can produce besides JSON's: dates, bytes, sets, floats of every kind."""
    roll = r.randrange(8)
    if roll == 0:
        return datetime.date(2024, 1, 1)
    if roll == 1:
        return datetime.datetime(2024, 1, 1, 12, 0)
    if roll == 2:
        return rand_bytes(r, 8)
    if roll == 3:
        return {rand_str(r, 4), rand_str(r, 4)}
    if roll == 4:
        return r.choice(VOCABULARY)
    if roll == 5:
        return {r.choice(VOCABULARY): rand_value(r, 1, json_only=True)}
    return rand_value(r, 2, json_only=True)


def nodes(doc: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    out = [(path, doc)]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += nodes(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += nodes(v, (*path, i))
    return out


def edit(r: random.Random, doc: Any) -> Any:
    doc = copy.deepcopy(doc)
    for _ in range(r.randint(1, 4)):
        path, node = r.choice(nodes(doc))
        if not path:
            if r.random() < 0.1:
                return odd_value(r)
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        roll = r.randrange(6)
        if roll == 0 and isinstance(parent, dict):
            del parent[last]
        elif roll == 1 and isinstance(parent, list):
            parent.append(copy.deepcopy(node))  # a duplicate component, trait or spread
        elif roll == 2 and isinstance(node, list | dict):
            node.clear()
        elif roll == 3 and isinstance(parent, dict):
            parent[r.choice(VOCABULARY) if r.random() < 0.5 else rand_str(r, 8)] = odd_value(r)
        else:
            parent[last] = odd_value(r)
    return doc


def bomb() -> str:
    levels = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    levels += [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "x:\n" + "\n".join("  " + line for line in levels) + """
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {name: bomb, annotations: {version: v1}}
spec:
  components:
    - {name: kv, type: capability, properties: {image: kvmem, contract: "a:b", config: {a: *l8}}}
    - name: web
      type: actor
      properties: {image: x.wasm}
      traits: [{type: linkdef, properties: {target: kv, values: {k: *l8}}}]
"""


HOSTILE = {
    "nested 100,000 deep": "[" * 100_000 + "]" * 100_000,
    "mapping nested 3,000 deep": "{a: " * 3000 + "1" + "}" * 3000,
    "a 5,000-digit number": "apiVersion: " + "1" * 5000,
    "a date that does not exist": "metadata: {name: x, annotations: {version: 2001-13-45}}",
    "a year out of range": "metadata: {name: 0000-01-01}",
    "an unknown tag": "apiVersion: !!python/object:os.system x",
    "bad base64": "spec: !!binary 'zz'",
    "NUL": "kind: \x00",
    "alias bomb": bomb(),
    "recursive alias": "spec: &s {components: [*s]}\nmetadata: &m {name: *m}\n",
    "unhashable key": "? [a, b]\n: c\n",
    "tabs": "\tkind: x",
    "duplicate keys": "kind: a\nkind: b\n",
    "JSON": json.dumps(DOCS[0]),
    "empty": "",
    "a document stream": "---\na: 1\n---\nb: 2\n",
}


def check_manifest_error(exc: BaseException) -> str | None:
    problem = check_error(exc, (ManifestError,))
    if problem:
        return problem
    assert isinstance(exc, ManifestError)
    if not exc.errors:
        return "ManifestError without errors"
    for line in exc.errors:
        why = unclear(line)
        if why:
            return why
        if not any(anchor in line for anchor in ANCHORS):
            return f"an error that does not say where: {line[:200]!r}"
    return None


def parse(findings: Findings, run, what: str, source: Any, *, text: bool) -> None:
    started = time.monotonic()
    try:
        m = Manifest.from_yaml(source) if text else Manifest.from_dict(source)
    except Exception as exc:
        findings.add(check_manifest_error(exc), (what, str(source)[:300]))
        run.refused()
    else:
        run.ok()
        again = Manifest.from_dict(m.to_dict())
        if json.dumps(again.to_dict(), sort_keys=True) != json.dumps(m.to_dict(), sort_keys=True):
            findings.add("to_dict does not round-trip", (what, m.to_dict()))
    took = time.monotonic() - started
    if took > 2.0:
        findings.add(f"parsing took {took:.1f} s", (what, str(source)[:200]))


def test_manifest_parser_refuses_garbage_with_manifest_error(fuzz_run):
    findings = Findings()
    r = rng("manifest")
    run = fuzz_run("manifest parser: from_dict / from_yaml")
    for name, text in HOSTILE.items():
        parse(findings, run, name, text, text=True)
    while run.inputs < INPUTS:
        roll = r.randrange(10)
        if roll < 6:
            parse(findings, run, "edited tree", edit(r, r.choice(DOCS)), text=False)
            continue
        if roll == 6:
            tree = edit(r, r.choice(DOCS))
            try:
                text = yaml.safe_dump(tree) if r.random() < 0.5 else json.dumps(tree)
            except (TypeError, ValueError, yaml.YAMLError):  # sets, bytes: not JSON
                text = yaml.safe_dump(tree)
        elif roll in (7, 8):
            text = mutate(r, r.choice(TEXTS).encode(), r.randint(1, 6)).decode("utf-8", "replace")
        else:
            text = rand_str(r, 200) if r.random() < 0.5 else \
                rand_bytes(r, 200).decode("latin-1")
        parse(findings, run, "text", text, text=True)
    assert not findings, findings.report()


# ---- hypothesis: documents from the manifest's vocabulary ----------------------------------------

_leaf = st.one_of(st.sampled_from(VOCABULARY), st.none(), st.booleans(), st.integers(-3, 5),
                  st.floats(allow_nan=False), st.text(max_size=8))
_tree = st.recursive(_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(VOCABULARY), inner, max_size=4)), max_leaves=25)
_names = st.sampled_from(["web", "kv", "http"])


def _or_tree(valid: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(valid, valid, _tree)  # valid twice as often as not


_component = st.fixed_dictionaries(
    {"name": _or_tree(_names), "type": _or_tree(st.sampled_from(["actor", "capability"]))},
    optional={"properties": _or_tree(st.fixed_dictionaries({}, optional={
        "image": _or_tree(st.just("x.wasm")),
        "contract": _or_tree(st.sampled_from(["wasmcloud:keyvalue", "wasmcloud:httpserver"])),
        "link_name": _tree, "config": _tree, "embedded": _or_tree(st.booleans())})),
        "traits": _or_tree(st.lists(st.fixed_dictionaries(
            {"type": st.sampled_from(["spreadscaler", "daemonscaler", "linkdef", "x"])},
            optional={"properties": _or_tree(st.fixed_dictionaries({}, optional={
                "replicas": _or_tree(st.integers(-1, 5)), "instances": _tree,
                "spread": _tree, "target": _or_tree(_names),
                "values": _tree}))}), max_size=3))})
_document = st.fixed_dictionaries({
    "apiVersion": _or_tree(st.just("core.oam.dev/v1beta1")),
    "kind": _or_tree(st.just("Application")),
    "metadata": _or_tree(st.fixed_dictionaries(
        {"name": _or_tree(st.just("app")), "annotations": _or_tree(
            st.fixed_dictionaries({"version": _or_tree(st.just("v1"))},
                                  optional={"description": _tree}))})),
    "spec": _or_tree(st.fixed_dictionaries({"components": st.lists(_component, max_size=4)}))})
HYPOTHESIS_EXAMPLES = max(1, INPUTS // 20)
_seen = {"inputs": 0, "refused": 0}


@settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(_document)
def _vocabulary_documents(doc):
    _seen["inputs"] += 1
    try:
        m = Manifest.from_dict(doc)
    except Exception as exc:
        _seen["refused"] += 1
        problem = check_manifest_error(exc)
        assert problem is None, (problem, doc)
    else:
        assert Manifest.from_dict(m.to_dict()) == m


def test_manifest_vocabulary_documents_hypothesis(fuzz_run):
    run = fuzz_run("manifest parser: vocabulary documents (hypothesis)")
    _seen.update(inputs=0, refused=0)
    _vocabulary_documents()
    run.inputs, run.rejected = _seen["inputs"], _seen["refused"]
    run.accepted = run.inputs - run.rejected
