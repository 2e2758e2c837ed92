"""benchmarks/recipes.py (issue 16's recipe experiments): every variant, alone or combined, is a valid run of
train.py — arguments, training arguments and model config — so that none fails an hour into a queue of runs."""

import importlib.util
import itertools

import pytest
from helpers import REPO_ROOT

from hf_rnn.training.arguments import parse_args

spec = importlib.util.spec_from_file_location("recipes", REPO_ROOT / "benchmarks" / "recipes.py")
recipes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recipes)


def check(config_name: str, arguments: list[str]):
    run = parse_args([config_name, *map(str, arguments), "--output_dir", "unused"])
    run.task.config_class(**run.model)  # typed fields and cross-field rules (e.g. tied embeddings need equal sizes)
    return run


@pytest.mark.parametrize("name", sorted(recipes.VARIANTS))
def test_every_variant_is_a_valid_run_here_and_on_tatoeba(name):
    chosen = recipes.variant(name)
    check("multi30k_en_de", [*recipes.COMMON, *chosen.args, "--max_steps", chosen.max_steps])
    check("multi30k_en_de", [*recipes.COMMON, *chosen.args, *recipes.SMOKE, "--max_steps", recipes.SMOKE_STEPS])
    check("tatoeba_en_ko", recipes.tatoeba_arguments(chosen))


def test_combined_variants_take_every_change_and_the_smaller_budget():
    for first, second in itertools.combinations(["ls0.2", "emb-dropout0", "hidden384", "bpe4000", "cosine"], 2):
        combined = recipes.variant(f"{first}+{second}")
        assert combined.args == recipes.BASE + recipes.VARIANTS[first].args + recipes.VARIANTS[second].args
        assert combined.max_steps == min(recipes.VARIANTS[first].max_steps, recipes.VARIANTS[second].max_steps)
        check("multi30k_en_de", [*recipes.COMMON, *combined.args, "--max_steps", combined.max_steps])
    with pytest.raises(SystemExit, match="unknown variant"):
        recipes.variant("ls0.2+nothing")


@pytest.mark.parametrize(
    ("name", "label_smoothing"), [("baseline", 0.1), ("dropout0.4", 0.1), ("ls0.2", 0.2), ("ls0", 0)]
)
def test_variants_keep_the_label_smoothing_of_their_figures_whatever_the_config_ships(name, label_smoothing):
    """The documented figures were measured from label smoothing 0.1; the config ships 0.2 since 2026-12-01."""
    chosen = recipes.variant(name)
    run = check("multi30k_en_de", [*recipes.COMMON, *chosen.args])
    assert run.training.label_smoothing_factor == label_smoothing
    carried = check("tatoeba_en_ko", recipes.tatoeba_arguments(chosen))
    assert carried.training.label_smoothing_factor == label_smoothing
