"""The shape of the code base, for the architecture issue's before/after table.

    python benchmarks/code_shape.py                 # lines per module, largest functions, one training run traced
    python benchmarks/code_shape.py --no-run        # static figures only

"Modules visited by one training run" traces a tiny `train.py` run (synthetic en→ko, 2 steps) and lists
the hf_rnn modules whose functions were called, and the distinct caller → callee module edges.
"""

import argparse
import ast
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hf_rnn"


def module_lines() -> dict[str, int]:
    return {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in sorted(PACKAGE.rglob("*.py"))}


def largest_functions(count: int) -> list[tuple[str, int]]:
    sizes = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                sizes.append((f"{path.relative_to(ROOT)}:{node.name}", node.end_lineno - node.lineno + 1))
    return sorted(sizes, key=lambda item: -item[1])[:count]


def traced_training_run() -> dict:
    """Which hf_rnn modules one (tiny) training run calls into, and the caller → callee module edges."""
    sys.path.insert(0, str(ROOT))
    modules, edges = set(), set()

    def module_of(frame) -> str | None:
        name = frame.f_globals.get("__name__", "")
        return name if name.startswith("hf_rnn") else None

    def profile(frame, event, arg):
        if event != "call" or frame.f_code.co_name == "<module>":  # imports are not part of the run's path
            return
        callee = module_of(frame)
        if callee is None:
            return
        modules.add(callee)
        caller = frame.f_back
        while caller is not None and module_of(caller) is None:
            caller = caller.f_back
        if caller is not None and module_of(caller) != callee:
            edges.add((module_of(caller), callee))

    from hf_rnn import train

    with tempfile.TemporaryDirectory() as output_dir:
        argv = [
            "--output_dir", output_dir, "--max_steps", "2", "--synthetic_train_size", "64",
            "--synthetic_eval_size", "8", "--per_device_train_batch_size", "8", "--model.hidden_size", "16",
            "--model.embedding_size", "8", "--tokenizer_vocab_size", "400", "--eval_strategy", "no",
            "--save_strategy", "no", "--report_to", "none", "--num_examples_to_print", "1",
        ]  # fmt: skip
        sys.setprofile(profile)
        try:
            train.main(argv)
        finally:
            sys.setprofile(None)
    return {"modules": sorted(modules), "edges": sorted(f"{a} -> {b}" for a, b in edges)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-run", action="store_true", help="Skip the traced training run.")
    parser.add_argument("--top", type=int, default=10, help="How many of the largest functions to list.")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()
    lines = module_lines()
    report = {
        "total_lines": sum(lines.values()),
        "module_lines": lines,
        "largest_functions": largest_functions(args.top),
    }
    if not args.no_run:
        report["training_run"] = traced_training_run()
    print(f"hf_rnn: {len(lines)} modules, {report['total_lines']} lines")
    for module, count in sorted(lines.items(), key=lambda item: -item[1]):
        print(f"  {count:5d}  {module}")
    print("Largest functions:")
    for name, count in report["largest_functions"]:
        print(f"  {count:5d}  {name}")
    if "training_run" in report:
        run = report["training_run"]
        print(f"One training run visits {len(run['modules'])} modules, {len(run['edges'])} cross-module call edges:")
        for module in run["modules"]:
            print(f"  {module}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
