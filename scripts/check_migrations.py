"""Migrations stay compatible with the release that is running (expand before contract).

A release runs `kassa migrate` while the previous release still serves (docs/deploy.md), so
every migration added since that release must leave the old code working:

- expand steps pass: new tables; new columns that are nullable or have a server default;
  indexes (a unique one only on a table made in the same release); relaxing a column
  (`nullable=True`, a server default); dropping an index or a constraint;
- contract steps pass only once the running release no longer uses what they remove:
  `drop_column` / `drop_table` fail while that release's models still name the column or
  table;
- everything else fails, naming the file and the line: NOT NULL columns without a default,
  type changes and renames, new unique/check/foreign-key constraints on existing tables
  (the old code's writes may break them), raw SQL (`op.execute`) unless the line before it
  says `# expand-safe: <why>`; the same mark lets a CHECK constraint be re-created wider
  than the one it replaces (a superset of what the running release writes).

    python scripts/check_migrations.py [--base REF]

REF is the running release (default: the newest `vX.Y.Z` tag before HEAD; with no release
yet there is nothing to stay compatible with). The migration files are read by their AST;
the running release's models come from `git show REF:...`.
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = "migrations/versions"
MODELS = "src/kassa"
EXPAND_SAFE_MARK = "# expand-safe:"
# Operations whose first argument is a name and whose second is the table (keyword name).
NAMED_FIRST = {
    "create_index": "table_name",
    "create_unique_constraint": "table_name",
    "create_check_constraint": "table_name",
    "create_primary_key": "table_name",
    "create_foreign_key": "source_table",
}
RELAXING_ALTER_KEYWORDS = {
    "nullable",
    "server_default",
    "comment",
    "existing_type",
    "existing_nullable",
    "existing_server_default",
    "existing_comment",
    "schema",
}


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


def _op_calls(function: ast.FunctionDef) -> Iterator[tuple[str, ast.Call, str | None]]:
    """(operation, call, table of the enclosing batch_alter_table) for every op.X / batch_op.X
    call in `function`, in source order."""

    def walk(
        nodes: list[ast.stmt], table: str | None
    ) -> Iterator[tuple[str, ast.Call, str | None]]:
        for node in nodes:
            if isinstance(node, ast.With):
                inner = table
                for item in node.items:
                    call = item.context_expr
                    if isinstance(call, ast.Call) and _name(call) == "batch_alter_table":
                        inner = _str_arg(call, 0, "table_name")
                yield from walk(node.body, inner)
                continue
            for child in ast.walk(node):
                if isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute):
                    owner = child.func.value
                    ours = isinstance(owner, ast.Name) and owner.id in {"op", "batch_op"}
                    if ours and child.func.attr != "f":  # op.f() only names a constraint
                        yield child.func.attr, child, table

    yield from walk(function.body, None)


def _name(call: ast.Call) -> str | None:
    return call.func.attr if isinstance(call.func, ast.Attribute) else None


def _str_arg(call: ast.Call, index: int, keyword: str) -> str | None:
    value: ast.expr | None = call.args[index] if len(call.args) > index else None
    for kw in call.keywords:
        if kw.arg == keyword:
            value = kw.value
    return value.value if isinstance(value, ast.Constant) and isinstance(value.value, str) else None


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _is_false(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def _column_call(call: ast.Call) -> ast.Call | None:
    """The sa.Column(...) an add_column adds."""
    for arg in [*call.args, *(kw.value for kw in call.keywords)]:
        if isinstance(arg, ast.Call) and (
            (isinstance(arg.func, ast.Attribute) and arg.func.attr == "Column")
            or (isinstance(arg.func, ast.Name) and arg.func.id == "Column")
        ):
            return arg
    return None


def _models_use(models: Mapping[str, str], table: str, column: str | None) -> bool:
    """Whether the running release's models map `table` (and name `column` in that file)."""
    pattern = re.compile(rf"""__tablename__\s*=\s*["']{re.escape(table)}["']""")
    for source in models.values():
        mapped = pattern.search(source) is not None
        if mapped and (column is None or re.search(rf"\b{re.escape(column)}\b", source)):
            return True
    return False


def check_migration(
    file: str, source: str, models: Mapping[str, str], created: set[str]
) -> list[Problem]:
    """What in one new migration's upgrade() could break the running release."""
    tree = ast.parse(source, filename=file)
    lines = source.splitlines()
    upgrade = next(
        (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade"), None
    )
    if upgrade is None:
        return [Problem(file, 1, "no upgrade() function")]
    problems: list[Problem] = []

    def refuse(call: ast.Call, message: str) -> None:
        problems.append(Problem(file, call.lineno, message))

    def marked(call: ast.Call) -> bool:
        before = lines[call.lineno - 2].strip() if call.lineno >= 2 else ""
        return before.startswith(EXPAND_SAFE_MARK)

    for operation, call, batch_table in _op_calls(upgrade):
        table: str | None
        if batch_table is not None:
            table = batch_table
        elif operation in NAMED_FIRST:  # op.create_index(name, table, ...)
            table = _str_arg(call, 1, NAMED_FIRST[operation])
        else:
            table = _str_arg(call, 0, "table_name")
        if operation == "create_table":
            if table:
                created.add(table)
        elif operation in {"drop_index", "drop_constraint", "batch_alter_table"}:
            pass
        elif operation in NAMED_FIRST and operation != "create_index" and table in created:
            pass  # a constraint on a table no running code has used yet
        elif operation == "create_check_constraint" and marked(call):
            pass  # a CHECK widened (said so on the line before): the old writes still pass
        elif operation == "create_index":
            if _is_true(_keyword(call, "unique")) and table not in created:
                refuse(
                    call,
                    f"a unique index on existing table {table!r} may refuse the "
                    "running release's writes; add it in a later release",
                )
        elif operation == "add_column":
            column = _column_call(call)
            if column is None:
                refuse(call, "add_column without a literal sa.Column(...) cannot be checked")
                continue
            not_null = _is_false(_keyword(column, "nullable")) or _is_true(
                _keyword(column, "primary_key")
            )
            if not_null and _keyword(column, "server_default") is None and table not in created:
                name = _str_arg(column, 0, "name")
                refuse(
                    call,
                    f"NOT NULL column {table}.{name} without a server_default: the "
                    "running release inserts rows without it (add it nullable, backfill, "
                    "and make it NOT NULL in a later release)",
                )
        elif operation == "alter_column":
            unsafe = [
                kw.arg or "**"
                for kw in call.keywords
                if kw.arg not in RELAXING_ALTER_KEYWORDS
                or (kw.arg == "nullable" and not _is_true(kw.value))
            ]
            if unsafe:
                refuse(
                    call,
                    f"alter_column changes {', '.join(unsafe)} under the running "
                    "release (expand with a new column instead)",
                )
        elif operation == "drop_column":
            column_name = _str_arg(call, 1 if batch_table is None else 0, "column_name")
            if table and _models_use(models, table, column_name):
                refuse(
                    call,
                    f"drops {table}.{column_name}, which the running release still "
                    "uses; drop it in the release after the code stops using it",
                )
        elif operation == "drop_table":
            if table and _models_use(models, table, None):
                refuse(call, f"drops table {table!r}, which the running release still maps")
        elif operation == "execute":
            if not marked(call):
                refuse(
                    call,
                    f"raw SQL cannot be checked: say why it is safe on the line "
                    f"before it ({EXPAND_SAFE_MARK} ...)",
                )
        else:
            refuse(
                call,
                f"op.{operation} may break the running release (rename, type change "
                "or a new constraint on an existing table): expand first, contract later",
            )
    return problems


def check(new: Mapping[str, str], models: Mapping[str, str]) -> list[Problem]:
    """Every problem in the new migrations (file name to source, in revision order)."""
    created: set[str] = set()
    problems: list[Problem] = []
    for file, source in sorted(new.items()):
        problems += check_migration(file, source, models, created)
    return problems


# git ----------------------------------------------------------------------------------------


def _git(*args: str) -> str:
    return subprocess.run(  # noqa: S603
        ["git", *args],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def latest_release() -> str | None:
    try:
        return _git("describe", "--tags", "--abbrev=0", "--match", "v*.*.*", "HEAD^").strip()
    except subprocess.CalledProcessError:
        return None


def new_migrations(base: str, read: Callable[[Path], str] = Path.read_text) -> dict[str, str]:
    try:
        released = set(_git("ls-tree", "--name-only", f"{base}:{VERSIONS}").split())
    except subprocess.CalledProcessError:  # the release had no migrations yet
        released = set()
    return {
        path.name: read(path)
        for path in sorted((ROOT / VERSIONS).glob("*.py"))
        if path.name not in released
    }


def released_models(base: str) -> dict[str, str]:
    files = _git("ls-tree", "-r", "--name-only", base, "--", MODELS).split()
    return {f: _git("show", f"{base}:{f}") for f in files if f.endswith(".py")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", help="the running release (default: the newest vX.Y.Z tag)")
    options = parser.parse_args(argv)
    base = options.base or latest_release()
    if base is None:
        print("check-migrations: no release yet, so nothing running to stay compatible with")
        return 0
    new = new_migrations(base)
    problems = check(new, released_models(base))
    for problem in problems:
        print(f"check-migrations: {problem}", file=sys.stderr)
    print(f"check-migrations: {len(new)} migration(s) since {base}, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
