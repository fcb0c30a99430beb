"""One settings truth: every key's description lives in `core/settings.py`, as the docstring under
its dataclass field; `params.yaml`'s trailing comments and `docs/settings.md` are generated from it.

    python -m core.settings_doc            # rewrite params.yaml's key comments and docs/settings.md
    python -m core.settings_doc --check    # exit 1 and name what drifted (tests/unit/test_settings_doc.py)

A docstring's first line is the key's summary (the comment params.yaml shows); the rest, if any,
goes to docs/settings.md only. Whole-line comments in params.yaml (section introductions) are
hand-written and kept. Free-form mappings keep their own comments: the bounds of each validation
profile (`validate.profiles.<name>`: why a dataset has other bounds), `validate.severity`,
`spark.conf` and the `tasks` list.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from core import settings as S

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"
DOC = REPO / "docs" / "settings.md"
COMMENT_COLUMN = 30
# Keys whose values are free-form mappings or lists: their lines keep hand-written comments.
FREE = ("validate.profiles.", "validate.severity.", "spark.conf.", "tasks")

# params.yaml's sections in file order, each with the dataclass that checks it (Settings.load).
SECTIONS: tuple[tuple[str, type], ...] = (
    ("run", S.RunSpec), ("paths", S.PathsSpec), ("synth", S.SynthConfig), ("ingest", S.IngestConfig),
    ("validate", S.ValidateSpec), ("validate.profiles.<name>", S.ValidationProfile),
    ("sequences", S.SequencesConfig), ("spark", S.SparkConfig), ("encode", S.EncodeConfig),
    ("train_universal", S.UniversalConfig), ("train_targeted", S.TargetedConfig),
    ("registry", S.RegistryConfig), ("export", S.ExportConfig), ("publish", S.PublishConfig),
    ("recall", S.RecallConfig), ("tasks[]", S.Task),
)


@dataclass(frozen=True)
class Key:
    path: str  # e.g. train_universal.model.id_dim
    type: str
    default: str
    doc: str  # the whole docstring; its first line is the summary

    @property
    def summary(self) -> str:
        return self.doc.splitlines()[0].strip() if self.doc else ""


def field_docs() -> dict[tuple[str, str], str]:
    """(class name, field name) -> the string literal right under the field in core/settings.py."""
    tree = ast.parse(Path(S.__file__).read_text(encoding="utf-8"))
    docs = {}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        body = cls.body
        for stmt, nxt in zip(body, body[1:]):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
                docs[(cls.name, stmt.target.id)] = _dedent(nxt.value.value)
    return docs


def _dedent(text: str) -> str:
    lines = text.strip().splitlines()
    return "\n".join(line.strip() for line in lines)


def _type(annotation: str) -> str:
    """The annotation as a reader wants it: `Annotated[float, Field(gt=0)]` -> `float (gt=0)`."""
    m = re.fullmatch(r"Annotated\[(.+?), Field\((.*)\)\]", annotation)
    if m:
        return f"{m.group(1)} ({m.group(2)})"
    return annotation


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    if dataclasses.is_dataclass(value):
        return "(section)"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def keys() -> list[Key]:
    """Every documented key of params.yaml, in file order (nested sections expanded)."""
    docs = field_docs()
    out: list[Key] = []

    def walk(prefix: str, cls: type, skip: tuple[str, ...] = ()) -> None:
        for f in dataclasses.fields(cls):
            if f.name in skip:
                continue
            path = f"{prefix}.{f.name}"
            out.append(Key(path, _type(str(f.type)), _default(f), docs.get((cls.__name__, f.name), "")))
            nested = getattr(S, str(f.type), None)
            if isinstance(nested, type) and dataclasses.is_dataclass(nested):
                walk(path, nested, S.TARGETED_FIXED_KEYS if path == "train_targeted.train" else ())

    for name, cls in SECTIONS:
        walk(name, cls)
    return out


def render_markdown() -> str:
    """docs/settings.md: one table per section, every key with its type, default and description."""
    by_section: dict[str, list[Key]] = {}
    for k in keys():
        section = max((name for name, _ in SECTIONS if k.path.startswith(name + ".")), key=len)
        by_section.setdefault(section, []).append(k)
    lines = ["# Settings (`params.yaml`)", "",
             "Generated by `python -m core.settings_doc` from the docstrings of `core/settings.py` (the one place a",
             "key is described); `params.yaml`'s key comments are the first line of each. Every key is checked when",
             "the file loads: an unknown key or a wrong type is an `error:` naming the key. Defaults are the",
             "dataclasses'; `params.yaml` sets the embedded default project's values.", ""]
    for name, cls in SECTIONS:
        lines += [f"## `{name}`", "", _dedent(cls.__doc__ or ""), "",
                  "| key | type | default | description |", "| --- | --- | --- | --- |"]
        for k in by_section.get(name, []):
            doc = " ".join(part for part in k.doc.splitlines() if part).replace("|", "\\|")
            key = k.path[len(name) + 1:]
            lines.append(f"| `{key}` | {k.type.replace('|', chr(92) + '|')} | `{k.default}` | {doc} |")
        lines.append("")
    return "\n".join(lines)


_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_]*):(?P<rest>.*)$")


def key_paths(text: str) -> list[tuple[str, str | None]]:
    """Each line of a params.yaml text with the dotted key path it sets (None: not a key line),
    from the indentation of the enclosing mappings."""
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    out = []
    for line in text.splitlines():
        m = _KEY_LINE.match(line)
        if not m:
            out.append((line, None))
            continue
        indent = len(m.group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group("key")))
        out.append((line, ".".join(k for _, k in stack)))
    return out


def annotate_params(text: str) -> str:
    """params.yaml with each key line's trailing comment set to the key's summary (see module doc)."""
    summaries = {k.path: k.summary for k in keys()}
    out = []
    for line, path in key_paths(text):
        if path is None or path.startswith(FREE) or path not in summaries:
            out.append(line)
            continue
        code = line.split(" #", 1)[0].rstrip()
        out.append(f"{code.ljust(max(len(code) + 2, COMMENT_COLUMN))}# {summaries[path]}" if summaries[path] else code)
    return "\n".join(out) + "\n"


def problems(params_text: str, doc_text: str | None) -> list[str]:
    """What drifted: undocumented keys, summaries over one line's worth, params.yaml, docs/settings.md."""
    documented = keys()
    found = [f"{k.path}: no docstring under the field in core/settings.py" for k in documented if not k.summary]
    found += [f"{k.path}: summary longer than 120 characters" for k in documented if len(k.summary) > 120]
    if annotate_params(params_text) != params_text:
        found.append("params.yaml: key comments differ from core/settings.py's docstrings")
    if doc_text is not None and doc_text != render_markdown():
        found.append("docs/settings.md: differs from core/settings.py's docstrings")
    return found


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    params_text = PARAMS.read_text(encoding="utf-8")
    if "--check" in argv:
        found = problems(params_text, DOC.read_text(encoding="utf-8") if DOC.is_file() else "")
        for p in found:
            print(f"error: {p}; run `python -m core.settings_doc`", file=sys.stderr)
        return 1 if found else 0
    from core.atomic import write_text

    write_text(PARAMS, annotate_params(params_text))
    write_text(DOC, render_markdown())
    print(f"wrote {PARAMS.name} key comments and {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
