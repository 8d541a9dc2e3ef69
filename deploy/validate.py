#!/usr/bin/env python3
"""Validates Kubernetes and Agones manifests and seccomp profiles, strictly, with no cluster.

Kubernetes kinds are checked against the JSON schemas bundled in the PyPI package
kubernetes-validate (the "-strict" variants: an unknown field is an error, where a
cluster would silently drop it). Agones kinds are checked against
deploy/schemas/agones-v1.schema.json, whose pod templates and metadata refer back to
the same Kubernetes schemas. Duplicate keys in a YAML mapping are errors too.

Every pod template must also pass the seccomp rules of Pod Security Admission at the
restricted level: each container's effective seccompProfile is RuntimeDefault or
Localhost, never Unconfined or unset. A Localhost profile's localhostProfile, a path
relative to the kubelet's seccomp folder, must name a file under deploy/seccomp/
(--seccomp-dir) that passes the profile checks below.

A FILE ending in .json is a seccomp profile: it must parse, match
deploy/schemas/oci-seccomp.schema.json (the OCI runtime-spec format that containerd
reads for Localhost profiles, strict), deny by default, and allow io_uring_setup,
io_uring_enter and io_uring_register without conditions (glommio needs all three).

Usage: validate.py [--k8s-version 1.31] [--seccomp-dir DIR] FILE...   (exit 1 on any error)
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

DEPLOY = pathlib.Path(__file__).resolve().parent
AGONES_SCHEMA = DEPLOY / "schemas" / "agones-v1.schema.json"
SECCOMP_SCHEMA = DEPLOY / "schemas" / "oci-seccomp.schema.json"
IO_URING = ("io_uring_setup", "io_uring_enter", "io_uring_register")
# Where each kind keeps its pod spec (a path of mapping keys).
POD_SPECS = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "GameServer": ("spec", "template", "spec"),
    "Fleet": ("spec", "template", "spec", "template", "spec"),
    "GameServerSet": ("spec", "template", "spec", "template", "spec"),
}


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


def seccomp_profile_errors(path):
    """Problems with a seccomp profile file (an empty list if it is fine)."""
    try:
        profile = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError) as e:
        return [f"not a readable JSON file: {e}"]
    validator = jsonschema.Draft202012Validator(json.loads(SECCOMP_SCHEMA.read_text()))
    found = []
    for error in sorted(validator.iter_errors(profile), key=lambda e: list(map(str, e.absolute_path))):
        best = jsonschema.exceptions.best_match([error])
        found.append(f"{'.'.join(str(p) for p in best.absolute_path) or '(top)'}: {best.message}")
    if found:
        return found
    if profile["defaultAction"] in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG"):
        found.append(f"defaultAction {profile['defaultAction']} allows every syscall not listed")
    allowed = {
        name
        for rule in profile["syscalls"]
        if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args")
        for name in rule["names"]
    }
    for name in IO_URING:
        if name not in allowed:
            found.append(f"{name} is not allowed unconditionally (glommio cannot start without it)")
    return found


def seccomp_errors(doc, seccomp_dir):
    """Pod Security Admission's restricted seccomp rule, and Localhost profiles that exist."""
    spec = doc
    for key in POD_SPECS.get(doc.get("kind"), ("-",)):
        spec = spec.get(key) if isinstance(spec, dict) else None
    if not isinstance(spec, dict):
        return []  # not a pod-bearing kind (or the schema check already failed)
    found = []

    def check(where, profile):
        if not isinstance(profile, dict):
            return
        kind, local = profile.get("type"), profile.get("localhostProfile")
        if kind == "Unconfined":
            found.append(f"{where}: seccompProfile Unconfined is refused by Pod Security "
                         f"Admission at baseline and restricted; use Localhost (deploy/seccomp/)")
        if local is not None and kind != "Localhost":
            found.append(f"{where}: localhostProfile is only allowed with type Localhost")
        if kind == "Localhost":
            if not isinstance(local, str) or not local:
                found.append(f"{where}: type Localhost needs localhostProfile")
                return
            relative = pathlib.PurePosixPath(local)
            if relative.is_absolute() or ".." in relative.parts:
                found.append(f"{where}: localhostProfile {local!r} must be a relative path "
                             f"inside the kubelet's seccomp folder")
                return
            file = pathlib.Path(seccomp_dir) / relative
            if not file.is_file():
                found.append(f"{where}: localhostProfile {local!r}: no such profile {file} "
                             f"(every Localhost profile is shipped under deploy/seccomp/)")
                return
            for problem in seccomp_profile_errors(file):
                found.append(f"{where}: localhostProfile {local!r}: {problem}")

    pod_profile = (spec.get("securityContext") or {}).get("seccompProfile")
    check("pod securityContext", pod_profile)
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(field) or []:
            if not isinstance(container, dict):
                continue
            where = f"{field}[{container.get('name', '?')}]"
            own = (container.get("securityContext") or {}).get("seccompProfile")
            check(where, own)
            effective = own if own is not None else pod_profile
            # (Unconfined was reported above, by check.)
            if (effective or {}).get("type") not in ("RuntimeDefault", "Localhost", "Unconfined"):
                found.append(f"{where}: no seccompProfile (Pod Security Admission at restricted "
                             f"requires RuntimeDefault or Localhost, on the pod or every container)")
    return found


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
    parser.add_argument("--seccomp-dir", type=pathlib.Path, default=DEPLOY / "seccomp",
                        help="where Localhost seccomp profiles are looked up (default: deploy/seccomp)")
    parser.add_argument("files", nargs="+", type=pathlib.Path)
    args = parser.parse_args()
    validator = Validator(args.k8s_version)
    failed = 0
    checked = 0
    for path in args.files:
        if path.suffix == ".json":
            checked += 1
            problems = seccomp_profile_errors(path)
            for problem in problems:
                print(f"ERROR {path} (seccomp profile): {problem}")
            if problems:
                failed += 1
            else:
                print(f"ok    {path} (seccomp profile)")
            continue
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
                if not problems:
                    problems = seccomp_errors(doc, args.seccomp_dir)
            else:
                problems = ["a YAML document that is not a mapping"]
            for problem in problems:
                print(f"ERROR {path} (document {index + 1}, {name}): {problem}")
            if problems:
                failed += 1
            else:
                print(f"ok    {path} (document {index + 1}, {name})")
    print(f"{checked} documents checked against Kubernetes {validator.version}, Agones v1 and "
          f"the seccomp rules: {failed} invalid")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
