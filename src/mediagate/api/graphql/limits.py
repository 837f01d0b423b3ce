"""Validation rules that bound what one document may ask for: depth and aliases."""

from __future__ import annotations

from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)
from graphql.language import BREAK


def _depth(
    selection_set: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    seen: frozenset[str],
) -> int:
    if selection_set is None:
        return 0
    deepest = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            deepest = max(deepest, 1 + _depth(selection.selection_set, fragments, seen))
        elif isinstance(selection, InlineFragmentNode):
            deepest = max(deepest, _depth(selection.selection_set, fragments, seen))
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is not None and name not in seen:
                deepest = max(deepest, _depth(fragment.selection_set, fragments, seen | {name}))
    return deepest


def _alias_count(selection_set: SelectionSetNode | None) -> int:
    if selection_set is None:
        return 0
    count = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode) and selection.alias is not None:
            count += 1
        if isinstance(selection, FieldNode | InlineFragmentNode):
            count += _alias_count(selection.selection_set)
    return count


def query_limits_rule(max_depth: int, max_aliases: int) -> type[ValidationRule]:
    class QueryLimitsRule(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)

        def enter_document(self, node: DocumentNode, *_args: Any) -> Any:
            fragments = {
                d.name.value: d for d in node.definitions if isinstance(d, FragmentDefinitionNode)
            }
            operations = [d for d in node.definitions if isinstance(d, OperationDefinitionNode)]
            depth = max(
                (_depth(op.selection_set, fragments, frozenset()) for op in operations), default=0
            )
            if depth > max_depth:
                self.report_error(
                    GraphQLError(f"query depth {depth} exceeds the limit of {max_depth}")
                )
            aliases = sum(
                _alias_count(d.selection_set)
                for d in node.definitions
                if isinstance(d, OperationDefinitionNode | FragmentDefinitionNode)
            )
            if aliases > max_aliases:
                self.report_error(
                    GraphQLError(f"{aliases} aliases exceed the limit of {max_aliases}")
                )
            return BREAK

    return QueryLimitsRule
