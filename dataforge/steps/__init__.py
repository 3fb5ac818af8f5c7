"""Step kinds, one module each; every kind registers itself by its YAML `type`.

`MODULES` names the module of each built-in kind, so that a recipe imports only the kinds it uses
(`base.load_kinds`); `tests/test_registry.py` holds it to what the modules register.
"""

MODULES: dict[str, str] = {
    "filter.heuristics": "dataforge.steps.filter.heuristics",
    "filter.rouge_l": "dataforge.steps.filter.rouge",
    "filter.semantic": "dataforge.steps.filter.semantic",
    "filter.verb_noun": "dataforge.steps.filter.verb_noun",
    "generate.classify": "dataforge.steps.generate.classify",
    "generate.prompt": "dataforge.steps.generate.prompt",
    "generate.self_instruct": "dataforge.steps.generate.self_instruct",
    "generate.teacher_cot": "dataforge.steps.generate.teacher_cot",
    "source.csv": "dataforge.steps.sources.delimited",
    "source.hf": "dataforge.steps.sources.hf",
    "source.inline": "dataforge.steps.sources.inline",
    "source.json": "dataforge.steps.sources.json_array",
    "source.jsonl": "dataforge.steps.sources.jsonl",
    "source.parquet": "dataforge.steps.sources.parquet",
    "source.sql": "dataforge.steps.sources.sql",
    "source.text": "dataforge.steps.sources.text",
    "source.tsv": "dataforge.steps.sources.delimited",
    "transform.flip": "dataforge.steps.transform.flip",
    "transform.grade": "dataforge.steps.transform.grade",
    "transform.prompt_completion": "dataforge.steps.transform.prompt_completion",
    "transform.sql": "dataforge.steps.transform.sql",
    "transform.symbols": "dataforge.steps.transform.symbols",
    "transform.template": "dataforge.steps.transform.template",
}
