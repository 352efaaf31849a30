"""What the release pipeline promises, read from the workflow files themselves (their syntax
is checked by `make check-deploy`): one build, and the tags on the digest that was tested;
a tag only on main; expand-only migrations; a smoke test after deploying that rolls back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]


def workflow(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = YAML(typ="safe").load((ROOT / ".github/workflows" / name).read_text())
    return loaded


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps", []))


def uses(step: dict[str, Any], action: str) -> bool:
    return str(step.get("uses", "")).startswith(action)


def test_a_release_builds_the_image_once_and_tags_the_digest_it_scanned_and_smoke_tested() -> None:
    release = workflow("release.yml")
    publish = steps(release["jobs"]["publish"])
    builds = [i for i, s in enumerate(publish) if uses(s, "docker/build-push-action")]
    assert len(builds) == 1
    build = publish[builds[0]]
    assert "push-by-digest=true" in build["with"]["outputs"]
    assert "tags" not in build["with"]  # nothing is tagged before it was tested
    names = [str(s.get("name", "")) for s in publish]
    scan = next(i for i, s in enumerate(publish) if uses(s, "aquasecurity/trivy-action"))
    smoke = next(i for i, n in enumerate(names) if n.startswith("Smoke-test that digest"))
    tag = next(i for i, n in enumerate(names) if n.startswith("Tag that digest"))
    assert builds[0] < scan < tag
    assert builds[0] < smoke < tag
    assert publish[scan]["with"]["image-ref"] == "${{ steps.ref.outputs.ref }}"
    assert "imagetools create" in publish[tag]["run"]
    assert "$IMAGE@$DIGEST" in publish[tag]["run"]
    # CI, called by the release on its tag, does not build a second image of its own.
    assert release["jobs"]["ci"]["uses"] == "./.github/workflows/ci.yml"
    assert (
        workflow("ci.yml")["jobs"]["image"]["if"] == "${{ !startsWith(github.ref, 'refs/tags/') }}"
    )
    assert "tags" not in workflow("ci.yml")["on"]["push"]  # a tag reaches CI only that way


def test_a_release_needs_its_tag_on_main_and_expand_only_migrations() -> None:
    release = workflow("release.yml")
    checks = steps(release["jobs"]["release-checks"])
    runs = "\n".join(str(s.get("run", "")) for s in checks)
    assert "git merge-base --is-ancestor" in runs
    assert "origin/main" in runs
    assert "scripts/check_migrations.py --base" in runs
    assert "release-checks" in release["jobs"]["publish"]["needs"]
    assert release["jobs"]["ci"]["needs"] == "release-checks"


def test_after_deploying_a_smoke_test_runs_and_a_failure_rolls_back() -> None:
    deploy = steps(workflow("release.yml")["jobs"]["deploy"])
    names = [str(s.get("name", "")) for s in deploy]
    api = names.index("Deploy the API")
    smoke = next(i for i, n in enumerate(names) if n.startswith("Smoke test"))
    rollback = next(i for i, n in enumerate(names) if n.startswith("Roll back"))
    assert api < smoke < rollback
    assert "/readyz" in deploy[smoke]["run"]
    assert "/api/payments/process" in deploy[smoke]["run"]
    assert "failure()" in deploy[rollback]["if"]
    assert "${{ steps.previous.outputs.api }}" in deploy[rollback]["env"].values()


def test_ci_runs_lint_and_type_checks_once() -> None:
    test_job = steps(workflow("ci.yml")["jobs"]["test"])
    commands = [str(s.get("run", "")).strip() for s in test_job if "run" in s]
    make_calls = [c for c in commands if c.startswith("make ")]
    assert make_calls.count("make lint") == 1
    assert make_calls.count("make typecheck") == 1
    assert "make test" not in make_calls  # it would run lint and typecheck again
    assert "make test-suite" in make_calls
    assert "make check-migrations" in make_calls
