#!/usr/bin/env python3
"""Validates Kubernetes and Agones manifests offline, strictly.

Kubernetes kinds are checked against the JSON schemas bundled in the PyPI package
kubernetes-validate (the "-strict" variants: an unknown field is an error, where a
cluster would silently drop it). Agones kinds are checked against
deploy/schemas/agones-v1.schema.json, whose pod templates and metadata refer back to
the same Kubernetes schemas. Duplicate keys in a YAML mapping are errors too.

Usage: validate.py [--k8s-version 1.31] FILE...   (exit status 1 on any error)
"""

import argparse
import json
import pathlib
import re
import sys

import jsonschema
import yaml
from kubernetes_validate import utils as kv
from referencing import Registry, Resource

AGONES_SCHEMA = pathlib.Path(__file__).resolve().parent / "schemas" / "agones-v1.schema.json"


class StrictLoader(yaml.SafeLoader):
    """A SafeLoader that rejects duplicate mapping keys (the last one would win)."""


def _mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def schema_dir(version):
    """The bundled strict schema folder for a Kubernetes minor version."""
    wanted = kv.major_minor(version.lstrip("v"))
    matches = [v for v in kv.all_versions() if kv.major_minor(v) == wanted]
    if not matches:
        sys.exit(f"kubernetes-validate has no schemas for {version}: {kv.all_versions()}")
    return f"kubernetes-json-schema/v{matches[-1]}-local-strict", matches[-1]


def load_json(path, version):
    return kv.schema_contents(path, version)


class Validator:
    def __init__(self, version):
        self.dir, self.version = schema_dir(version)
        definitions = load_json(f"{self.dir}/_definitions.json", self.version)
        self.agones = json.loads(AGONES_SCHEMA.read_text())
        self.registry = Registry().with_resources(
            [
                (definitions["$id"], Resource.from_contents(definitions)),
                (self.agones["$id"], Resource.from_contents(self.agones)),
            ]
        )

    def schema_for(self, doc):
        """The schema for a document, or an error message."""
        api_version, kind = doc.get("apiVersion"), doc.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str):
            return None, "not a Kubernetes object (apiVersion and kind are required)"
        group = api_version.split("/")[0] if "/" in api_version else ""
        if group == "agones.dev" or group.endswith(".agones.dev"):
            ref = self.agones["x-kinds"].get(f"{api_version}/{kind}")
            if ref is None:
                return None, f"no Agones schema for {api_version} {kind}"
            return {"$ref": self.agones["$id"] + ref["$ref"]}, None
        # kubernetes-validate's file naming: apps/v1 -> apps-v1, rbac.authorization.k8s.io/v1 -> rbac-v1
        mangled = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
        try:
            return load_json(f"{self.dir}/{kind.lower()}-{mangled}.json", self.version), None
        except (FileNotFoundError, kv.VersionNotSupportedError):
            return None, f"no Kubernetes {self.version} schema for {api_version} {kind}"

    def errors(self, doc):
        schema, problem = self.schema_for(doc)
        if problem:
            return [problem]
        validator = jsonschema.Draft202012Validator(schema, registry=self.registry)
        found = []
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
            # For anyOf/oneOf, the most specific sub-error says more than the summary.
            best = jsonschema.exceptions.best_match([error])
            path = ".".join(str(p) for p in best.absolute_path) or "(top)"
            found.append(f"{path}: {best.message}")
        return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k8s-version", default="1.31")
    parser.add_argument("files", nargs="+", type=pathlib.Path)
    args = parser.parse_args()
    validator = Validator(args.k8s_version)
    failed = 0
    checked = 0
    for path in args.files:
        try:
            docs = list(yaml.load_all(path.read_text(), Loader=StrictLoader))
        except (OSError, yaml.YAMLError) as e:
            print(f"ERROR {path}: {e}")
            failed += 1
            continue
        for index, doc in enumerate(docs):
            if doc is None:
                continue
            checked += 1
            name = "?"
            if isinstance(doc, dict):
                meta = doc.get("metadata") or {}
                name = f"{doc.get('kind', '?')}/{meta.get('name') or meta.get('generateName', '?')}"
                problems = validator.errors(doc)
            else:
                problems = ["a YAML document that is not a mapping"]
            for problem in problems:
                print(f"ERROR {path} (document {index + 1}, {name}): {problem}")
            if problems:
                failed += 1
            else:
                print(f"ok    {path} (document {index + 1}, {name})")
    print(f"{checked} documents checked against Kubernetes {validator.version} and Agones v1: "
          f"{failed} invalid")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
