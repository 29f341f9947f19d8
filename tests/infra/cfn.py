"""Reading a CloudFormation template: what an expression refers to, and the effective IAM
grants of a role."""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

SUB_NAME = re.compile(r"\$\{([A-Za-z0-9_:]+)(?:\.[A-Za-z0-9_.]+)?\}")


def references(value: Any) -> set[str]:
    """Logical ids and parameters an expression refers to (Ref, GetAtt, Sub), without AWS::
    pseudo parameters. Both branches of an Fn::If count."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner.split(".")[0])
            elif key == "Fn::GetAtt":
                found.add(inner[0] if isinstance(inner, list) else inner.split(".")[0])
            elif key == "Fn::Sub":
                text, variables = (inner, {}) if isinstance(inner, str) else (inner[0], inner[1])
                found |= {n for n in SUB_NAME.findall(text) if n not in variables}
                found |= references(variables)
            elif key == "Fn::If":
                found |= references(inner[1:])
            else:
                found |= references(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= references(inner)
    return {name for name in found if not name.startswith("AWS::")}


def statements(policy_document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Statements of a policy document; a statement under Fn::If counts (as if its condition held)."""
    listed = policy_document.get("Statement", [])
    for statement in listed if isinstance(listed, list) else [listed]:
        if isinstance(statement, dict) and "Fn::If" in statement:
            for branch in statement["Fn::If"][1:]:
                if isinstance(branch, dict) and branch != {"Ref": "AWS::NoValue"}:
                    yield branch
        else:
            yield statement


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def grants(role: dict[str, Any], ignore: frozenset[str] = frozenset({"Stage"})) -> set[tuple[str, str]]:
    """(action, what it applies to) for every Allow statement of a role's inline policies: the
    logical ids the statement's Resource and Condition refer to, or "*"."""
    pairs: set[tuple[str, str]] = set()
    for policy in role["Properties"].get("Policies", []):
        for statement in statements(policy["PolicyDocument"]):
            assert statement.get("Effect") == "Allow", statement
            targets = references([statement.get("Resource"), statement.get("Condition")]) - ignore
            if not targets and statement.get("Resource") == "*":
                targets = {"*"}
            for action in as_list(statement["Action"]):
                for target in targets or {"(none)"}:
                    pairs.add((action, target))
    return pairs
