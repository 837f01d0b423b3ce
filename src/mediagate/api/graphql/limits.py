"""The cost budget a document must meet before any other validation rule sees it.

Every check here is linear in the document's size: each selection node is visited once
and each fragment is summarised once, its summary reused wherever it is spread. The
standard rules (some of which compare fields pairwise) only run on documents whose
expanded size is already known to be within budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

from mediagate.config import GraphQLSettings


@dataclass(frozen=True, slots=True)
class Cost:
    """What executing a definition asks for, with fragments expanded."""

    depth: int = 0
    selections: int = 0
    aliases: int = 0


@dataclass(slots=True)
class _Definition:
    local: Cost = field(default_factory=Cost)
    # (fragment name, depth of the field level the spread stands at)
    spreads: list[tuple[str, int]] = field(default_factory=list)


class OverBudget(Exception):
    pass


@dataclass(slots=True)
class DocumentMeter:
    """Measures a document against the limits; `nodes_visited` counts its work."""

    limits: GraphQLSettings
    nodes_visited: int = 0
    _spread_count: int = 0

    def check(self, document: DocumentNode) -> list[GraphQLError]:
        try:
            self._check(document)
        except OverBudget as reason:
            return [GraphQLError(str(reason))]
        return []

    def _check(self, document: DocumentNode) -> None:
        fragments: dict[str, _Definition] = {}
        operations: list[_Definition] = []
        for definition in document.definitions:
            if isinstance(definition, FragmentDefinitionNode):
                fragments[definition.name.value] = self._walk(definition.selection_set)
            elif isinstance(definition, OperationDefinitionNode):
                operations.append(self._walk(definition.selection_set))
        costs = self._fragment_costs(fragments)
        for operation in operations:
            self._within_limits(self._combine(operation, costs))

    def _walk(self, selection_set: SelectionSetNode) -> _Definition:
        """One definition's own fields and the spreads it makes, without expanding them."""
        found = _Definition()
        depth = selections = aliases = 0
        stack: list[tuple[SelectionSetNode, int]] = [(selection_set, 0)]
        while stack:
            current, level = stack.pop()
            for selection in current.selections:
                self.nodes_visited += 1
                if isinstance(selection, FieldNode):
                    selections += 1
                    aliases += selection.alias is not None
                    depth = max(depth, level + 1)
                    if selection.selection_set is not None:
                        stack.append((selection.selection_set, level + 1))
                elif isinstance(selection, InlineFragmentNode):
                    stack.append((selection.selection_set, level))
                elif isinstance(selection, FragmentSpreadNode):
                    self._spread_count += 1
                    if self._spread_count > self.limits.max_spreads:
                        raise OverBudget(f"more than {self.limits.max_spreads} fragment spreads")
                    found.spreads.append((selection.name.value, level))
        found.local = Cost(depth, selections, aliases)
        return found

    def _fragment_costs(self, fragments: dict[str, _Definition]) -> dict[str, Cost]:
        """Each fragment's expanded cost, dependencies first (iterative: no recursion limit)."""
        costs: dict[str, Cost] = {}
        in_progress: set[str] = set()
        for root in fragments:
            stack = [root]
            while stack:
                name = stack[-1]
                self.nodes_visited += 1
                if name in costs:
                    stack.pop()
                    continue
                pending = [
                    spread
                    for spread, _level in fragments[name].spreads
                    if spread in fragments and spread not in costs
                ]
                if not pending:
                    in_progress.discard(name)
                    costs[name] = self._combine(fragments[name], costs)
                    stack.pop()
                    continue
                if name in in_progress:
                    raise OverBudget(f"fragment {name} spreads itself")
                in_progress.add(name)
                stack.extend(pending)
        return costs

    def _combine(self, definition: _Definition, costs: dict[str, Cost]) -> Cost:
        depth, selections, aliases = (
            definition.local.depth,
            definition.local.selections,
            definition.local.aliases,
        )
        for name, level in definition.spreads:
            self.nodes_visited += 1
            spread = costs.get(name)
            if spread is None:
                continue  # an unknown fragment: the standard rules report it
            depth = max(depth, level + spread.depth)
            # Saturate: beyond the budget the exact figure does not matter.
            selections = min(selections + spread.selections, self.limits.max_selections + 1)
            aliases = min(aliases + spread.aliases, self.limits.max_aliases + 1)
        return Cost(depth, selections, aliases)

    def _within_limits(self, cost: Cost) -> None:
        limits = self.limits
        if cost.depth > limits.max_depth:
            raise OverBudget(f"query depth {cost.depth} exceeds the limit of {limits.max_depth}")
        if cost.selections > limits.max_selections:
            raise OverBudget(
                f"the operation selects more than {limits.max_selections} fields "
                "once fragments are expanded"
            )
        if cost.aliases > limits.max_aliases:
            raise OverBudget(f"more than {limits.max_aliases} aliases")
