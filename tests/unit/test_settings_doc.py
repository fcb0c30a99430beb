"""One settings truth: core/settings.py's field docstrings generate params.yaml's key comments
and docs/settings.md (core/settings_doc.py); these tests fail when either drifts."""

from core import settings_doc as sd


def test_params_yaml_and_settings_md_match_the_docstrings():
    problems = sd.problems(sd.PARAMS.read_text(encoding="utf-8"), sd.DOC.read_text(encoding="utf-8"))
    assert problems == [], "\n".join(problems) + "\nrun `python -m core.settings_doc`"


def test_every_key_has_a_one_line_summary():
    keys = sd.keys()
    assert len(keys) > 150  # every section, nested ones (model, train, alternate) included
    assert all(k.summary and len(k.summary) <= 120 for k in keys)
    paths = {k.path for k in keys}
    assert {"train_universal.model.age_logit", "train_universal.train.alternate.patience", "run.date",
            "validate.profiles.<name>.min_events", "tasks[].scenes"} <= paths
    # targeted training sets these itself: documented under train_universal.train only
    assert "train_targeted.train.loss" not in paths and "train_universal.train.loss" in paths


def test_a_stale_comment_is_rewritten_and_free_form_comments_are_kept():
    text = ("synth:\n  seed: 7   # an old description\n  days: 3\n"
            "validate:\n  profiles:\n    movielens:\n      max_events_per_user: 10000   # some users rate thousands\n")
    out = sd.annotate_params(text)
    summary = {k.path: k.summary for k in sd.keys()}
    assert "  seed: 7".ljust(sd.COMMENT_COLUMN) + f"# {summary['synth.seed']}\n" in out
    assert f"# {summary['synth.days']}" in out and "an old description" not in out
    assert "      max_events_per_user: 10000   # some users rate thousands\n" in out  # a profile's own reason
    assert sd.annotate_params(out) == out  # idempotent
    assert sd.problems(text, None) == ["params.yaml: key comments differ from core/settings.py's docstrings"]


def test_every_key_in_params_yaml_is_documented():
    documented = {k.path for k in sd.keys()}
    undocumented = [path for _, path in sd.key_paths(sd.PARAMS.read_text(encoding="utf-8"))
                    if path and not path.startswith(sd.FREE) and path not in documented and "." in path]
    assert undocumented == []
