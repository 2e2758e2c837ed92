"""Code that must exist twice is declared and checked, as in transformers (`utils/check_copies.py`).

Each model family's configuration and modeling files travel alone as Hub remote code, so a few
helpers are written out in each of them. Every such copy carries, on the line above its
definition, `# Copied from hf_rnn.<module>.<name>` (optionally followed by `with A->B, C->D`,
replacements applied to the source first); the copy must equal its source to the letter. Any
family (translator, captioner, the coming `hf_rnn/lstm/`) may mark its copies so.
"""

import ast
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import REPO_ROOT

# A mark longer than a line may end with a noqa comment for E501 (line length), as transformers' marks do.
MARK = re.compile(
    r"^\s*# Copied from (?P<target>hf_rnn(?:\.\w+)+)(?:\s+with\s+(?P<renames>.+?))?(?:\s+# noqa: E501)?\s*$"
)


@dataclass
class Copy:
    path: Path
    line: int  # 1-based line of the mark
    target: str
    renames: list[tuple[str, str]]


def definitions(tree: ast.Module) -> dict[str, ast.AST]:
    """Top-level functions, classes and assignments by name, and methods as `Class.name`."""
    found: dict[str, ast.AST] = {}
    for node in tree.body:
        for name in node_names(node):
            found[name] = node
        if isinstance(node, ast.ClassDef):
            for member in node.body:
                for name in node_names(member):
                    found[f"{node.name}.{name}"] = member
    return found


def node_names(node: ast.AST) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [target.id for target in node.targets if isinstance(target, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def source_of(lines: list[str], node: ast.AST) -> str:
    """The node's lines (decorators included), dedented by the indentation of its first line."""
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    block = lines[first - 1 : node.end_lineno]
    indent = len(block[0]) - len(block[0].lstrip())
    return "\n".join(line[indent:] for line in block)


def find_copies(root: Path) -> list[Copy]:
    copies = []
    for path in sorted((root / "hf_rnn").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            match = MARK.match(line)
            if match:
                renames = [
                    tuple(part.strip() for part in pair.split("->"))
                    for pair in (match["renames"] or "").split(",")
                    if pair.strip()
                ]
                copies.append(Copy(path, number, match["target"], renames))
    return copies


def resolve(root: Path, target: str) -> tuple[Path, str] | None:
    """`hf_rnn.a.b.Name.attr` -> (root/hf_rnn/a/b.py, "Name.attr"): the longest module prefix that is a file."""
    parts = target.split(".")
    for split in range(len(parts) - 1, 0, -1):
        path = root.joinpath(*parts[:split]).with_suffix(".py")
        if path.is_file():
            return path, ".".join(parts[split:])
    return None


def check_copies(root: Path) -> list[str]:
    """Every problem with the marked copies under `root`, one sentence each (empty when all copies match)."""
    problems = []
    for copy in find_copies(root):
        where = f"{copy.path.relative_to(root)}:{copy.line}"
        resolved = resolve(root, copy.target)
        source_nodes = {} if resolved is None else definitions(ast.parse(resolved[0].read_text()))
        if resolved is None or resolved[1] not in source_nodes:
            problems.append(f"{where}: `{copy.target}` does not exist")
            continue
        source = source_of(resolved[0].read_text().splitlines(), source_nodes[resolved[1]])
        for old, new in copy.renames:
            source = source.replace(old, new)
        lines = copy.path.read_text().splitlines()
        copied = [
            node
            for node in ast.walk(ast.parse("\n".join(lines)))
            if node_names(node)
            and min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))]) == copy.line + 1
        ]
        if not copied:
            problems.append(f"{where}: the mark is not followed by a definition")
        elif source_of(lines, copied[0]) != source:
            problems.append(f"{where}: differs from `{copy.target}`; make the two equal again (or drop the mark)")
    return problems


def test_every_marked_copy_equals_its_source():
    assert find_copies(REPO_ROOT), "no `# Copied from` marks found: is the pattern right?"
    assert check_copies(REPO_ROOT) == []


def copy_of_the_package(tmp_path: Path) -> Path:
    shutil.copytree(REPO_ROOT / "hf_rnn", tmp_path / "hf_rnn", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


@pytest.mark.parametrize("edit", ["copy", "source"])
def test_a_drifted_copy_is_reported(tmp_path, edit):
    """Negative control: change one side of a marked copy and the check names the copy."""
    root = copy_of_the_package(tmp_path)
    copy = next(c for c in find_copies(root) if c.target.endswith(".shift_tokens_right"))
    path = copy.path if edit == "copy" else resolve(root, copy.target)[0]
    text = path.read_text()
    assert text.count("shifted[:, 0] = decoder_start_token_id") == 1
    path.write_text(text.replace("shifted[:, 0] = decoder_start_token_id", "shifted[:, 0] = pad_token_id"))
    assert check_copies(root) == [
        f"{copy.path.relative_to(root)}:{copy.line}: differs from `{copy.target}`; make the two equal again "
        "(or drop the mark)"
    ]


def test_a_mark_naming_nothing_is_reported(tmp_path):
    root = copy_of_the_package(tmp_path)
    copy = find_copies(root)[0]
    lines = copy.path.read_text().splitlines()
    lines[copy.line - 1] = lines[copy.line - 1].replace(copy.target, copy.target + "_gone")
    copy.path.write_text("\n".join(lines) + "\n")
    assert check_copies(root) == [f"{copy.path.relative_to(root)}:{copy.line}: `{copy.target}_gone` does not exist"]
