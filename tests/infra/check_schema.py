#!/usr/bin/env python3
"""Check Terraform blocks against the providers' own schemas, offline.

Every `resource`, `data` and `provider` block under the given paths is checked against a schema in
the format of `terraform providers schema -json`: the type exists, every argument and nested block
(recursively, `dynamic` blocks included) exists, required ones are set, blocks are written as
blocks and arguments as arguments, single blocks appear once, a literal value has the argument's
shape (single value, list or map), and (Google) a literal value of an argument whose docs list its
possible values is one of them; and every read of a resource's or data source's attribute
(`TYPE.NAME.ATTRIBUTE`) names one the type has. Findings print as `file:line: ...`
with the closest valid names, then one summary line; the exit code is 1 when there is any.

    check_schema.py google-schema CACHE_DIR        # prints the Google schema's path, building it once
    check_schema.py terraform-schema ROOT CACHE_DIR  # the same for an initialised root (AWS), cached
    check_schema.py check --schema FILE... PATH...  # PATH: .tf files or folders (recursive)

The Google provider cannot be installed offline, so its schema comes from the npm package
@cdktf/provider-google (its .jsii assembly is generated from the provider's schema); the AWS one is
what `terraform providers schema -json` prints with the local mirror. Uses the HCL parser that
checkov installs (bc-python-hcl2, pinned by checkov), at the level of its syntax tree: the tree
tells a block from an object-valued argument and carries line numbers.
"""

import argparse
import base64
import difflib
import hashlib
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

from hcl2.parser import Hcl2, strip_line_comment
from lark import Token, Tree

# Pinned: the version and the registry's integrity hash of the tarball (`npm view PKG dist.integrity`).
GOOGLE_PACKAGE = "@cdktf/provider-google"
GOOGLE_PACKAGE_VERSION = "16.12.1"  # generated from hashicorp/google 6.50.0
GOOGLE_PACKAGE_INTEGRITY = "sha512-KqNA/5RiFT07r0PSZ6/07cJ2zESUgbj1JchVj21iBFBZVUbD+578xA/k8eq/r0cbyEgLmg9eYWeVslaYah4DCQ=="
GOOGLE_ADDRESS = "registry.terraform.io/hashicorp/google"
# Part of the cached schemas' names: bump it when what they hold changes, so old caches are not read.
CACHE_FORMAT = "v3"

# Terraform's own arguments and blocks, valid in every resource / data source / provider block.
META_ARGUMENTS = {
    "resource": {"count", "for_each", "provider", "depends_on"},
    "data": {"count", "for_each", "provider", "depends_on"},
    "provider": {"alias", "version"},
}
META_BLOCKS = {"resource": {"lifecycle", "provisioner", "connection"}, "data": {"lifecycle"}, "provider": set()}
LIFECYCLE_ARGUMENTS = {"create_before_destroy", "prevent_destroy", "ignore_changes", "replace_triggered_by"}
LIFECYCLE_BLOCKS = {"precondition", "postcondition"}
DYNAMIC_ARGUMENTS = {"for_each", "iterator", "labels"}


# ---------------------------------------------------------------------------------------------
# The Google schema from the cdktf jsii assembly

# A struct property's docs link to the registry page, anchored at the Terraform argument name:
# "{@link https://registry.terraform.io/providers/hashicorp/google/6.50.0/docs/resources/storage_bucket#force_destroy ...}".
ARGUMENT_LINK = re.compile(r"\{@link https://registry\.terraform\.io/providers/[^ }#]*#(\w+) ")
# A resource / data source class's summary names its Terraform type.
TYPE_LINK = re.compile(r"\{@link https://registry\.terraform\.io/providers/hashicorp/google/([\w.]+)/docs(?:/(resources|data-sources)/\w+)? (\w[\w-]*)\}")


def fetch_google_package(cache: Path) -> Path:
    """The pinned npm tarball, downloaded once into `cache` with `npm pack` and checked against its hash."""
    tarball = cache / f"cdktf-provider-google-{GOOGLE_PACKAGE_VERSION}.tgz"
    if not tarball.exists():
        cache.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(
                ["npm", "pack", "--silent", f"{GOOGLE_PACKAGE}@{GOOGLE_PACKAGE_VERSION}", "--pack-destination", str(cache)],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        except FileNotFoundError:
            sys.exit(f"check_schema: npm not found; it fetches {GOOGLE_PACKAGE}@{GOOGLE_PACKAGE_VERSION} once (https://nodejs.org)")
    digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
    if digest != GOOGLE_PACKAGE_INTEGRITY:
        tarball.unlink()
        sys.exit(f"check_schema: {tarball} does not match the pinned integrity {GOOGLE_PACKAGE_INTEGRITY}; removed it")
    return tarball


# Generated docs of enum-like arguments end their description with `Possible values: ["A", "B"]`.
POSSIBLE_VALUES = re.compile(r"Possible values: (\[[^\]]*\])")


def docs_text(prop: dict) -> str:
    docs = prop.get("docs", {})
    return " ".join([docs.get("summary", ""), docs.get("remarks", ""), *docs.get("custom", {}).values()])


def terraform_name(prop: dict) -> str:
    """A jsii property's Terraform name: the docs link's anchor (cdktf renames e.g. `build` to
    `buildAttribute`), else snake_case of the camelCase name."""
    found = ARGUMENT_LINK.search(docs_text(prop))
    if found:
        return found.group(1)
    return re.sub(r"(?<!^)(?=[A-Z])", "_", prop["name"]).lower()


def nested_struct(types: dict, type_ref: dict) -> tuple[str | None, bool]:
    """(struct fqn, is a list) when a property's type is a nested block of the provider, else (None, False)."""
    for option in type_ref.get("union", {}).get("types", [type_ref]):
        element = option.get("collection", {}).get("elementtype")
        fqn = (element or option).get("fqn")
        if fqn and types.get(fqn, {}).get("datatype") and not fqn.startswith("cdktf."):
            return fqn, element is not None
    return None, False


def jsii_shape(type_ref: dict) -> str | None:
    """The value shape of an argument's jsii type: "value" (string, number, bool), "list" or "map"."""
    for option in type_ref.get("union", {}).get("types", [type_ref]):
        if "primitive" in option:
            return "value" if option["primitive"] in ("string", "number", "boolean") else None
        if "collection" in option:
            return "list" if option["collection"]["kind"] == "array" else "map"
    return None


def block_from_struct(types: dict, fqn: str, path: tuple = ()) -> dict:
    """A cdktf config struct as a Terraform schema block. cdktf makes blocks of max_items 1 a single
    struct and other blocks an array of structs; a non-optional property is required."""
    if fqn in path:  # the provider's schema is a tree; guard anyway
        return {"attributes": {}, "block_types": {}}
    struct = types[fqn]
    attributes, block_types = {}, {}
    for parent in struct.get("interfaces", []):
        if parent in types and not parent.startswith("cdktf."):
            inherited = block_from_struct(types, parent, path + (fqn,))
            attributes.update(inherited["attributes"])
            block_types.update(inherited["block_types"])
    for prop in struct.get("properties", []):
        name = terraform_name(prop)
        required = not prop.get("optional", False)
        child, is_list = nested_struct(types, prop["type"])
        if child:
            block = {"nesting_mode": "list", "block": block_from_struct(types, child, path + (fqn,))}
            if required:
                block["min_items"] = 1
            if not is_list:
                block["max_items"] = 1
            block_types[name] = block
        else:
            attributes[name] = {"required": True} if required else {"optional": True}
            shape = jsii_shape(prop["type"])
            if shape:
                attributes[name]["shape"] = shape
            values = POSSIBLE_VALUES.search(docs_text(prop))
            if values:
                # Not in Terraform's schema format: the provider's documented values, checked on literals.
                attributes[name]["possible_values"] = json.loads(values.group(1))
    return {"attributes": attributes, "block_types": block_types}


def readable_names(camel: str) -> set[str]:
    """Terraform names a cdktf getter may stand for: `selfLink` is self_link, `detectMd5Hash`
    detect_md5hash, `hugepageSize1G` hugepage_size_1g, `buildAttribute` build (renamed by cdktf)."""
    joined = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", camel).lower()
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z0-9])|(?<=[0-9])(?=[A-Z])", "_", camel).lower()
    names = {joined, spaced}
    return names | {name.removesuffix("_attribute") for name in names}


def add_computed_attributes(types: dict, kind: dict, config: str, block: dict):
    """The attributes only the provider sets (the class's getters that are not config arguments),
    as Terraform's schema marks them: computed, neither optional nor required."""
    config_names = {prop["name"]: terraform_name(prop) for prop in types[config].get("properties", [])}
    known = set(block["attributes"]) | set(block["block_types"])
    for prop in kind.get("properties", []):
        if prop.get("static") or prop["name"].endswith("Input") or prop["name"] in config_names:
            continue
        names = readable_names(prop["name"])
        if not names & known:
            for name in names:
                block["attributes"][name] = {"computed": True}


def schema_from_jsii(assembly: dict) -> dict:
    """The provider schema (`terraform providers schema -json` format) described by a cdktf assembly."""
    types = assembly["types"]
    provider: dict = {"resource_schemas": {}, "data_source_schemas": {}}
    versions = set()
    for kind in types.values():
        if kind.get("kind") != "class" or kind.get("base") not in ("cdktf.TerraformResource", "cdktf.TerraformDataSource", "cdktf.TerraformProvider"):
            continue
        link = TYPE_LINK.search(kind.get("docs", {}).get("summary", ""))
        config = next((p["type"].get("fqn") for p in kind["initializer"]["parameters"] if p["name"] == "config"), None)
        if not link or not config:
            raise ValueError(f"{kind['fqn']}: no Terraform type or config struct in its jsii entry")
        versions.add(link.group(1))
        block = {"block": block_from_struct(types, config)}
        add_computed_attributes(types, kind, config, block["block"])
        if kind["base"] == "cdktf.TerraformProvider":
            provider["provider"] = block
        elif link.group(2) == "resources":
            provider["resource_schemas"][link.group(3)] = block
        else:
            provider["data_source_schemas"][link.group(3)] = block
    return {
        "format_version": "1.0",
        "generated_from": f"hashicorp/google {', '.join(sorted(versions))} ({GOOGLE_PACKAGE}@{assembly['version']} jsii)",
        "provider_schemas": {GOOGLE_ADDRESS: provider},
    }


def google_schema(cache: Path) -> Path:
    """The Google schema file in `cache`, built from the pinned package on first use (~5 s, ~600 MB)."""
    schema = cache / f"google-cdktf-{GOOGLE_PACKAGE_VERSION}.{CACHE_FORMAT}.schema.json"
    if not schema.exists():
        with tarfile.open(fetch_google_package(cache)) as tarball:
            assembly = json.loads(tarball.extractfile("package/.jsii").read())
        partial = schema.with_suffix(".partial")
        partial.write_text(json.dumps(schema_from_jsii(assembly)))
        partial.rename(schema)
    return schema


def terraform_shape(attribute: dict) -> str | None:
    """The value shape of a Terraform schema attribute: "value", "list" or "map" (None: dynamic)."""
    if "nested_type" in attribute:
        return {"single": "map", "map": "map"}.get(attribute["nested_type"].get("nesting_mode"), "list")
    kind = attribute.get("type")
    if kind in ("string", "number", "bool"):
        return "value"
    if isinstance(kind, list):
        return "list" if kind[0] in ("list", "set", "tuple") else "map"
    return None


def slim_block(block: dict) -> dict:
    """A schema block with only what the check reads (a fifth of the size: no descriptions or types)."""
    keys = ("required", "optional", "computed")
    attributes = {}
    for name, attribute in block.get("attributes", {}).items():
        attributes[name] = {k: True for k in keys if attribute.get(k)}
        shape = terraform_shape(attribute)
        if shape:
            attributes[name]["shape"] = shape
    return {
        "attributes": attributes,
        "block_types": {
            name: {
                **{k: nested[k] for k in ("nesting_mode", "min_items", "max_items") if k in nested},
                "block": slim_block(nested["block"]),
            }
            for name, nested in block.get("block_types", {}).items()
        },
    }


def terraform_schema(directory: Path, cache: Path) -> Path:
    """`terraform providers schema -json` of an initialised root (TF_DATA_DIR as for its init),
    cached per provider version and slimmed (~3 s to produce, 10 MB for hashicorp/aws 5.100)."""
    def terraform(*args: str) -> str:
        return subprocess.run(["terraform", f"-chdir={directory}", *args], check=True, capture_output=True, text=True).stdout

    selections = json.loads(terraform("version", "-json"))["provider_selections"]
    if not selections:
        sys.exit(f"check_schema: {directory} selects no provider; run terraform init there first")
    versions = "+".join(f"{address.split('/', 1)[1].replace('/', '-')}-{version}" for address, version in sorted(selections.items()))
    schema = cache / f"{versions}.{CACHE_FORMAT}.schema.json"
    if not schema.exists():
        cache.mkdir(parents=True, exist_ok=True)
        printed = json.loads(terraform("providers", "schema", "-json"))
        slim = {
            "format_version": printed["format_version"],
            "generated_from": ", ".join(f"{address.split('/', 1)[1]} {version}" for address, version in sorted(selections.items()))
            + " (terraform providers schema -json)",
            "provider_schemas": {
                address: {
                    "provider": {"block": slim_block(provider["provider"]["block"])},
                    **{
                        table: {name: {"block": slim_block(entry["block"])} for name, entry in provider.get(table, {}).items()}
                        for table in ("resource_schemas", "data_source_schemas")
                    },
                }
                for address, provider in printed["provider_schemas"].items()
            },
        }
        partial = schema.with_suffix(".partial")
        partial.write_text(json.dumps(slim))
        partial.rename(schema)
    return schema


# Terraform's built-in provider, which `terraform providers schema -json` leaves out.
BUILTIN_SCHEMA = {
    "generated_from": "terraform.io/builtin/terraform",
    "provider_schemas": {
        "terraform.io/builtin/terraform": {
            "resource_schemas": {"terraform_data": {"block": {"attributes": {"input": {"optional": True}, "triggers_replace": {"optional": True}}}}},
            "data_source_schemas": {
                "terraform_remote_state": {
                    "block": {"attributes": {"backend": {"required": True}, "config": {"optional": True}, "defaults": {"optional": True}, "workspace": {"optional": True}}}
                }
            },
        }
    },
}


# ---------------------------------------------------------------------------------------------
# Checking blocks


def closest(name: str, valid) -> str:
    valid = sorted(valid)
    near = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    if near:
        return "closest: " + ", ".join(near)
    if not valid:
        return "it takes no arguments"
    return "valid: " + ", ".join(valid) if len(valid) <= 20 else f"no close match among {len(valid)} names"


def labels_of(block: Tree) -> tuple[str, list[str], Tree]:
    """A block's type, its labels and its body."""
    *heads, body = block.children
    names = [head.children[0].value if isinstance(head, Tree) else head.value.strip('"') for head in heads]
    return names[0], names[1:], body


def items_of(body: Tree):
    """(kind, name, line, node) for each argument and block of a body, in order."""
    for node in body.children:
        if not isinstance(node, Tree):
            continue
        if node.data == "attribute":
            identifier = node.children[0]
            yield "argument", identifier.children[0].value, node.meta.line, node
        elif node.data == "block":
            yield "block", labels_of(node)[0], node.meta.line, node


def literal_string(attribute: Tree) -> str | None:
    """An argument's value when it is a plain string literal (no interpolation), else None."""
    value = attribute.children[1]
    while isinstance(value, Tree) and value.data == "expr_term" and len(value.children) == 1:
        value = value.children[0]
    if isinstance(value, Token) and value.type == "STRING_LIT" and "${" not in value:
        return value[1:-1]
    return None


SHAPE_WORDS = {"value": "a single value (string, number or bool)", "list": "a list or set", "map": "a map or object"}


def literal_shape(attribute: Tree) -> str | None:
    """The shape of an argument's value when it is written as a literal, else None (a reference or
    a call could be anything). Terraform converts between strings, numbers and bools, but never
    between those, lists and maps."""
    value = attribute.children[1]
    while isinstance(value, Tree) and value.data == "expr_term" and len(value.children) == 1:
        value = value.children[0]
    if isinstance(value, Token):
        return "value" if value.type == "STRING_LIT" else None
    if value.data in ("int_lit", "float_lit", "heredoc_template", "heredoc_template_trim"):
        return "value"
    if value.data == "identifier":
        return "value" if value.children[0].value in ("true", "false") else None
    if value.data in ("tuple", "for_tuple_expr"):
        return "list"
    if value.data in ("object", "for_object_expr"):
        return "map"
    return None


# A read of a resource's or data source's attribute: [data.]TYPE.NAME[index].ATTRIBUTE.
REFERENCE = re.compile(r"(?<![\w.])(data\.)?((?:google|aws)_\w+)\.\w+(?:\[[^\]\n]*\])?\.(\w+)")


def code_only(text: str) -> str:
    """The text with comments blanked out, lines kept where they were."""
    lines, in_block_comment = [], False
    for line in text.split("\n"):
        if in_block_comment:
            in_block_comment = "*/" not in line
            lines.append(line.split("*/", 1)[1] if not in_block_comment else "")
            continue
        code, token, rest = strip_line_comment(line)
        in_block_comment = token == "/*" and "*/" not in rest
        lines.append(code)
    return "\n".join(lines)


class Checker:
    def __init__(self, schemas: list[dict]):
        # Types are owned by the provider named by their prefix: google_storage_bucket -> google.
        self.providers: dict[str, dict] = {}
        self.sources: dict[str, str] = {}
        for schema in schemas:
            for address, provider in schema["provider_schemas"].items():
                local = address.rsplit("/", 1)[-1]
                self.providers[local] = provider
                self.sources[local] = schema.get("generated_from", address)
        self.findings: list[tuple[str, int, str]] = []
        self.checked = 0
        self.reads = 0

    def report(self, path: str, line: int, message: str):
        self.findings.append((path, line, message))

    def check_file(self, path: Path):
        text = path.read_text()
        try:
            tree = Hcl2.lark_parser.parse(text + "\n")
        except Exception as error:  # lark's errors carry the line
            self.report(str(path), getattr(error, "line", 0), f"cannot parse: {str(error).splitlines()[0]}")
            return
        self.check_references(str(path), text)
        body = next(child for child in tree.children if isinstance(child, Tree) and child.data == "body")
        for kind, name, line, node in items_of(body):
            if kind != "block" or name not in ("resource", "data", "provider"):
                continue
            _, labels, block_body = labels_of(node)
            self.check_top_block(str(path), name, labels, line, block_body)

    def check_references(self, path: str, text: str):
        """Each `TYPE.NAME.ATTR` read (also `TYPE.NAME[i].ATTR`, `data.TYPE...`) names an
        attribute or block of TYPE: `terraform validate` checks that, and GCP has no validate."""
        code = code_only(text)
        for match in REFERENCE.finditer(code):
            data, type_name, attribute = match.group(1), match.group(2), match.group(3)
            provider = self.providers.get(type_name.split("_", 1)[0])
            table = (provider or {}).get("data_source_schemas" if data else "resource_schemas", {})
            if type_name not in table:
                continue  # an unknown type is reported where it is declared (or by check_references.py)
            self.reads += 1
            block = table[type_name]["block"]
            readable = set(block.get("attributes", {})) | set(block.get("block_types", {}))
            if attribute not in readable:
                line = code.count("\n", 0, match.start()) + 1
                self.report(path, line, f"{match.group(0)}: {type_name} has no attribute {attribute!r}; {closest(attribute, readable)}")

    def check_top_block(self, path: str, kind: str, labels: list[str], line: int, body: Tree):
        type_name = labels[0]
        provider_name = type_name if kind == "provider" else type_name.split("_", 1)[0]
        provider = self.providers.get(provider_name)
        if provider is None:
            address = ("data." if kind == "data" else "") + ".".join(labels)
            self.report(path, line, f"{address}: no schema loaded for provider {provider_name!r}")
            return
        if kind == "provider":
            address, schema = f"provider {type_name}", provider.get("provider")
        else:
            table = provider["resource_schemas" if kind == "resource" else "data_source_schemas"]
            address = ("data." if kind == "data" else "") + ".".join(labels)
            schema = table.get(type_name)
            if schema is None:
                what = "resource type" if kind == "resource" else "data source"
                self.report(path, line, f"{address}: unknown {what} {type_name!r} in {self.sources[provider_name]}; {closest(type_name, table)}")
                return
        self.checked += 1
        self.check_body(path, address, line, body, schema["block"], kind)

    def check_body(self, path: str, address: str, line: int, body: Tree, block: dict, top_kind: str | None = None):
        """One block body against its schema block; `top_kind` is set for resource/data/provider
        bodies, where Terraform's meta-arguments are also valid."""
        attributes = block.get("attributes", {})
        block_types = block.get("block_types", {})
        meta_arguments = META_ARGUMENTS.get(top_kind, set())
        meta_blocks = META_BLOCKS.get(top_kind, set())
        valid = set(attributes) | set(block_types) | meta_arguments | meta_blocks
        set_arguments, static_blocks, dynamic_blocks = set(), {}, set()
        for kind, name, item_line, node in items_of(body):
            if kind == "argument":
                if name in meta_arguments:
                    continue
                if name in attributes:
                    set_arguments.add(name)
                    schema = attributes[name]
                    if schema.get("computed") and not (schema.get("optional") or schema.get("required")):
                        self.report(path, item_line, f"{address}: {name!r} is computed by the provider and cannot be set")
                    given = literal_shape(node)
                    if schema.get("shape") and given and given != schema["shape"]:
                        self.report(path, item_line, f"{address}: {name!r} takes {SHAPE_WORDS[schema['shape']]}, not {SHAPE_WORDS[given]}")
                    value = literal_string(node)
                    possible = schema.get("possible_values")
                    if possible and value is not None and value and value not in possible:
                        self.report(path, item_line, f"{address}: {name} = {value!r} is not a value the provider documents; {closest(value, possible)}")
                elif name in block_types:
                    self.report(path, item_line, f"{address}: {name!r} is a block, not an argument: write `{name} {{ ... }}`")
                else:
                    self.report(path, item_line, f"{address}: unknown argument {name!r}; {closest(name, valid)}")
                continue
            _, labels, child_body = labels_of(node)
            if name == "dynamic":
                self.check_dynamic(path, address, item_line, labels, child_body, block_types, attributes, valid, dynamic_blocks)
            elif name in meta_blocks:
                if name == "lifecycle":
                    self.check_lifecycle(path, address, child_body)
            elif name in block_types:
                static_blocks.setdefault(name, []).append(item_line)
                self.check_body(path, f"{address}.{name}", item_line, child_body, block_types[name]["block"])
            elif name in attributes:
                self.report(path, item_line, f"{address}: {name!r} is an argument, not a block: write `{name} = ...`")
                set_arguments.add(name)
            else:
                self.report(path, item_line, f"{address}: unknown block {name!r}; {closest(name, valid)}")
        for name, lines in static_blocks.items():
            schema = block_types[name]
            most = 1 if schema["nesting_mode"] in ("single", "group") else schema.get("max_items")
            if most is not None and len(lines) > most:
                self.report(path, lines[most], f"{address}: block {name!r} appears {len(lines)} times; the schema allows at most {most}")
        for name in sorted(attributes):
            if attributes[name].get("required") and name not in set_arguments:
                self.report(path, line, f"{address}: missing required argument {name!r}")
        for name in sorted(block_types):
            if block_types[name].get("min_items", 0) >= 1 and name not in static_blocks and name not in dynamic_blocks:
                self.report(path, line, f"{address}: missing required block {name!r}")

    def check_dynamic(self, path, address, line, labels, body, block_types, attributes, valid, dynamic_blocks):
        name = labels[0] if labels else ""
        if name in attributes:
            self.report(path, line, f"{address}: dynamic {name!r} names an argument, not a block: write `{name} = ...`")
            return
        if name not in block_types:
            self.report(path, line, f"{address}: unknown block {name!r} (dynamic); {closest(name, set(block_types))}")
            return
        dynamic_blocks.add(name)
        contents = []
        for kind, item, item_line, node in items_of(body):
            if kind == "argument" and item in DYNAMIC_ARGUMENTS:
                continue
            if kind == "block" and item == "content":
                contents.append(node)
                continue
            self.report(path, item_line, f"{address}: dynamic {name!r}: unexpected {kind} {item!r}; it takes for_each, iterator, labels and one content block")
        if len(contents) != 1:
            self.report(path, line, f"{address}: dynamic {name!r} needs exactly one content block")
        for node in contents:
            self.check_body(path, f"{address}.{name}", node.meta.line, labels_of(node)[2], block_types[name]["block"])

    def check_lifecycle(self, path, address, body):
        for kind, name, line, _ in items_of(body):
            known = LIFECYCLE_ARGUMENTS if kind == "argument" else LIFECYCLE_BLOCKS
            if name not in known:
                self.report(path, line, f"{address}: unknown {kind} {name!r} in lifecycle; {closest(name, LIFECYCLE_ARGUMENTS | LIFECYCLE_BLOCKS)}")


def terraform_files(paths: list[str]) -> list[Path]:
    """The .tf files of the paths; a path without any is an error, so a mistyped one cannot pass."""
    files = []
    for given in map(Path, paths):
        found = sorted(p for p in given.rglob("*.tf") if ".terraform" not in p.parts) if given.is_dir() else [given]
        if not found or not found[0].is_file():
            sys.exit(f"check_schema: no .tf files at {given}")
        files += found
    return files


def check(schema_paths: list[str], paths: list[str]) -> int:
    schemas = [json.loads(Path(p).read_text()) for p in schema_paths]
    checker = Checker([BUILTIN_SCHEMA] + schemas)
    files = terraform_files(paths)
    for path in files:
        checker.check_file(path)
    for path, line, message in sorted(checker.findings):
        print(f"{path}:{line}: {message}")
    sources = "; ".join(sorted(schema.get("generated_from", path) for schema, path in zip(schemas, schema_paths)))
    outcome = "ok" if not checker.findings else f"{len(checker.findings)} finding(s)"
    print(f"schema check of {' '.join(paths)}: {len(files)} files, {checker.checked} blocks and {checker.reads} attribute reads against {sources}: {outcome}")
    return 1 if checker.findings else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("google-schema", help="build (once) and print the path of the Google provider schema")
    build.add_argument("cache", type=Path)
    printed = commands.add_parser("terraform-schema", help="print the path of `terraform providers schema -json` of an initialised root, cached")
    printed.add_argument("directory", type=Path)
    printed.add_argument("cache", type=Path)
    run = commands.add_parser("check", help="check .tf files against provider schemas")
    run.add_argument("--schema", action="append", required=True, help="a `terraform providers schema -json` file")
    run.add_argument("paths", nargs="+")
    args = parser.parse_args()
    if args.command == "google-schema":
        print(google_schema(args.cache))
        return 0
    if args.command == "terraform-schema":
        print(terraform_schema(args.directory, args.cache))
        return 0
    return check(args.schema, args.paths)


if __name__ == "__main__":
    sys.exit(main())
