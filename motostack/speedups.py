"""Speed patches to moto's private internals, opt-in: `apply()` for good (motostack's moto server
does, when the launcher's Settings.speedups names them), `applied()` for a while (tests that
compare patched and stock answers). Nothing else applies them.

Each patch is named (PATCHES) and documented in docs/moto-upstream.md, as a change moto could take
itself, with what it gains, measured with one patch left out at a time (MOTOSTACK_SPEEDUPS=all,-name).
Each sets attributes of moto's modules and classes through `_set`, which remembers what it replaced,
so `undo()` puts moto back as it was.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib
import inspect
import pickle
import threading
from collections.abc import Callable, Iterator
from typing import Any

_replaced: list[tuple[Any, str, Any]] = []
_MISSING = object()


def _set(owner: Any, name: str, value: Any) -> None:
    _replaced.append((owner, name, vars(owner).get(name, _MISSING)))
    setattr(owner, name, value)


def undo(keep: int = 0) -> None:
    """Put back what the patches replaced, newest first, down to the first `keep` replacements."""
    while len(_replaced) > keep:
        owner, name, old = _replaced.pop()
        if old is _MISSING:
            delattr(owner, name)
        else:
            setattr(owner, name, old)


def _memoise_jsonpath() -> None:
    import jsonpath_ng.ext

    if not hasattr(jsonpath_ng.ext.parse, "cache_info"):
        _set(jsonpath_ng.ext, "parse", functools.lru_cache(maxsize=512)(jsonpath_ng.ext.parse))


def _module_list_once() -> None:
    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    _set(backends, "list_of_moto_modules", lambda: modules)


def _speed_up_partition_queries() -> None:
    table_module: Any = importlib.import_module("moto.dynamodb.models.table")
    table_class = table_module.Table
    if getattr(table_class.query, "by_partition", False):
        return
    original_query, original_all_items = table_class.query, table_class.all_items
    signature = inspect.signature(original_query)
    scope = threading.local()

    def all_items(self: Any) -> Any:
        partition = getattr(scope, "partition", None)
        if partition is None or partition[0] is not self:
            return original_all_items(self)
        found = self.items.get(partition[1])
        if found is None:
            return []
        items = list(found.values()) if self.range_key_attr else [found]
        return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)

    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        arguments = signature.bind(self, *args, **kwargs).arguments
        hash_key = arguments.get("hash_key")
        if arguments.get("index_name") or hash_key is None:
            return original_query(self, *args, **kwargs)
        scope.partition = (self, hash_key)
        try:
            return original_query(self, *args, **kwargs)
        finally:
            scope.partition = None

    query.by_partition = True  # type: ignore[attr-defined]
    _set(table_class, "query", query)
    _set(table_class, "all_items", all_items)


def _validate_new_items_once(ddb_models: Any, validators: Any) -> None:
    backend = ddb_models.DynamoDBBackend
    if getattr(backend.update_item, "validates_once", False):
        return
    original_update = backend.update_item
    real_validator = validators.UpdateExpressionValidator
    creating = threading.local()

    class Skipped:
        def validate(self) -> None:
            return None

    def validator(*args: Any, **kwargs: Any) -> Any:
        item = kwargs.get("item")
        if getattr(creating, "active", False) and item is not None and not item.attrs:
            creating.active = False  # only moto's check against the blank item, once
            return Skipped()
        return real_validator(*args, **kwargs)

    def update_item(self: Any, table_name: str, key: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        try:
            table = self.get_table(table_name)
            hash_key, range_key = self.get_keys_value(table, key)
            new = table.get_item(hash_key, range_key) is None
        except Exception:
            new = False  # moto's own path raises the right error
        if not new or not kwargs.get("update_expression") or table.stream_shard is not None:
            return original_update(self, table_name, key, *args, **kwargs)
        creating.active = True
        try:
            return original_update(self, table_name, key, *args, **kwargs)
        except Exception:
            created = table.get_item(hash_key, range_key)
            if created is not None and set(created.attrs) <= set(table.attribute_keys):
                table.delete_item(hash_key, range_key)
            raise
        finally:
            creating.active = False

    update_item.validates_once = True  # type: ignore[attr-defined]
    _set(ddb_models, "UpdateExpressionValidator", validator)
    _set(backend, "update_item", update_item)


def _speed_up_serializer() -> None:
    responses: Any = importlib.import_module("moto.core.responses")
    serialize: Any = importlib.import_module("moto.core.serialize")

    if not hasattr(responses.method_names_from_class, "cache_info"):
        listing = responses.method_names_from_class
        _set(
            responses,
            "method_names_from_class",
            functools.lru_cache(maxsize=None)(lambda cls: frozenset(listing(cls))),
        )

    picker = serialize.AttributePicker
    if getattr(picker.__call__, "memoised", False):
        return
    original = picker.__call__
    missing = serialize.MISSING
    candidates: dict[tuple[type, str, Any], tuple[str, ...]] = {}

    def pick(self: Any, context: Any) -> Any:
        obj = context.obj
        # Anything but a plain dict (its aliases can depend on the object), or a transformed value:
        # moto's own way.
        if type(obj) is not dict or self.response_transformers:
            return original(self, context)
        cache_key = (type(self), context.key, context.shape)
        keys = candidates.get(cache_key)
        if keys is None:
            keys = candidates[cache_key] = tuple(self.get_possible_keys(context))
        for key in keys:
            value = serialize.get_value(obj, key, missing) if "." in key else obj.get(key, missing)
            if value is not missing:
                return value
        return None

    pick.memoised = True  # type: ignore[attr-defined]
    _set(picker, "__call__", pick)


def _speed_up_update_expressions() -> None:
    # moto's internals, typed loosely on purpose: these are patches of private code.
    ddb_models: Any = importlib.import_module("moto.dynamodb.models")
    ddb_responses: Any = importlib.import_module("moto.dynamodb.responses")
    ast_nodes: Any = importlib.import_module("moto.dynamodb.parsing.ast_nodes")
    validators: Any = importlib.import_module("moto.dynamodb.parsing.validators")
    UpdateExpressionParser = importlib.import_module(
        "moto.dynamodb.parsing.expressions"
    ).UpdateExpressionParser

    if getattr(ddb_models.UpdateExpressionParser, "memoised", False):
        return
    # A parsed tree is never changed (validators work on copies), so it is kept by its text, and
    # its pickled form is taken once, when it is parsed: each copy is then one unpickling. Both are
    # dropped together when the memo is full, so an id in `pickled` is always a live tree's.
    # What depends on the expression's text alone is worked out once per tree too: the clauses of
    # a kind that the request handler looks up (the names and values used), and whether the action
    # counts are valid (then its copies are not counted again).
    memo: dict[str, Any] = {}
    pickled: dict[int, bytes] = {}
    clauses: dict[int, dict[tuple[type, ...], list[Any]]] = {}
    counts_valid: set[int] = set()
    verify_action_counts = validators.ActionCountValidator.verify_action_counts

    def parse(expression: str) -> Any:
        tree = memo.get(expression)
        if tree is None:
            tree = UpdateExpressionParser.make(expression)
            if len(memo) >= 1024:
                for table in (memo, pickled, clauses, counts_valid):
                    table.clear()
            memo[expression] = tree
            with contextlib.suppress(pickle.PicklingError, TypeError, AttributeError):
                pickled[id(tree)] = pickle.dumps(tree, pickle.HIGHEST_PROTOCOL)
                clauses[id(tree)] = {}
                with contextlib.suppress(Exception):  # an invalid count is reported by moto, later
                    verify_action_counts(validators.ActionCountValidator(), tree)
                    counts_valid.add(id(tree))
        return tree

    find_clauses = ast_nodes.Node.find_clauses

    def find_clauses_once(self: Any, clause_types: Any) -> list[Any]:
        by_kind = clauses.get(id(self))
        if by_kind is None:
            return find_clauses(self, clause_types)  # type: ignore[no-any-return]
        kind = tuple(clause_types)
        found = by_kind.get(kind)
        if found is None:
            found = by_kind[kind] = find_clauses(self, clause_types)
        return list(found)

    _set(ast_nodes.Node, "find_clauses", find_clauses_once)

    class MemoisedParser:
        memoised = True
        make = staticmethod(parse)

    _set(ddb_models, "UpdateExpressionParser", MemoisedParser)
    _set(ddb_responses, "UpdateExpressionParser", MemoisedParser)

    # Copies of a tree whose action counts are valid, until the count check sees them.
    counted: dict[int, Any] = {}

    def copy_tree(tree: Any) -> Any:
        data = pickled.get(id(tree))
        if data is not None:
            clone = pickle.loads(data)  # noqa: S301 (our own objects)
            if id(tree) in counts_valid:
                if len(counted) > 64:  # copies whose validation never ran
                    counted.clear()
                counted[id(clone)] = clone
            return clone
        try:
            return pickle.loads(pickle.dumps(tree, pickle.HIGHEST_PROTOCOL))  # noqa: S301 (our own objects)
        except (pickle.PicklingError, TypeError, AttributeError):
            return copy.deepcopy(tree)

    _set(validators, "deepcopy", copy_tree)
    _validate_new_items_once(ddb_models, validators)

    def at_root_only(check: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def traverse(self: Any, node: Any) -> Any:
            if isinstance(node, validators.UpdateExpression):
                check(self, node)
            return node

        return traverse

    count_at_root = at_root_only(verify_action_counts)

    def count_actions(self: Any, node: Any) -> Any:
        if counted.pop(id(node), None) is node:
            return node
        return count_at_root(self, node)

    _set(validators.ActionCountValidator, "traverse", count_actions)
    _set(
        validators.OverlappingPathsValidator,
        "traverse",
        at_root_only(validators.OverlappingPathsValidator.check_for_overlapping_paths),
    )
    kinds: dict[type, tuple[type, ...]] = {}

    def nodes_to_be_processed(self: Any) -> tuple[type, ...]:
        found = kinds.get(type(self))
        if found is None:
            found = kinds[type(self)] = tuple(self._processing_map())
        return found

    _set(ast_nodes.DepthFirstTraverser, "nodes_to_be_processed", nodes_to_be_processed)

    # The same walk as moto's, with isinstance on its abstract Node class (slow: the ABC machinery)
    # answered once per class.
    subclass: dict[tuple[type, Any], bool] = {}

    def is_a(cls: type, kinds: Any) -> bool:
        known = subclass.get((cls, kinds))
        if known is None:
            known = subclass[(cls, kinds)] = issubclass(cls, kinds)
        return known

    Node = ast_nodes.Node

    base_hook = ast_nodes.DepthFirstTraverser.pre_processing_of_child

    def traverse(self: Any, root: Any) -> Any:
        """moto's walk, with what is fixed for the whole walk looked up once: the kinds this
        processor handles, its hook (skipped when it is the base class's no-op) and its process."""
        kinds = self.nodes_to_be_processed()
        hook = None if type(self).pre_processing_of_child is base_hook else self.pre_processing_of_child
        process = self.process
        known: dict[type, tuple[bool, bool]] = {}

        def walk(node: Any, child_id: int) -> Any:
            cls = type(node)
            flags = known.get(cls)
            if flags is None:
                flags = known[cls] = (is_a(cls, Node), is_a(cls, kinds))
            if flags[0]:
                parent_node = node.parent
                children = node.children
                if children is not None:
                    for i, child_node in enumerate(children):
                        if hook is not None:
                            hook(node, i)
                        walk(child_node, i)
                if flags[1]:
                    node = process(node)
                    node.parent = parent_node
                    if parent_node:
                        parent_node.children[child_id] = node
            return node

        return walk(root, -1)

    _set(ast_nodes.DepthFirstTraverser, "traverse", traverse)  # (the two root-only validators keep theirs)


PATCHES: dict[str, Callable[[], None]] = {
    "jsonpath": _memoise_jsonpath,
    "module-list": _module_list_once,
    "update-expressions": _speed_up_update_expressions,
    "partition-queries": _speed_up_partition_queries,
    "serializer": _speed_up_serializer,
}
NAMES = tuple(PATCHES)


def choose(names: str) -> list[str]:
    """The patches `names` names: "all", "none", or a comma-separated list, where "-name" leaves
    one out of what came before (MOTOSTACK_SPEEDUPS=all,-jsonpath)."""
    chosen: list[str] = []
    for part in (p.strip() for p in names.split(",") if p.strip()):
        if part == "all":
            chosen = list(NAMES)
        elif part == "none":
            chosen = []
        elif part.startswith("-") and part[1:] in NAMES:
            chosen = [name for name in chosen if name != part[1:]]
        elif part in NAMES:
            chosen.append(part)
        else:
            raise ValueError(f"no speed patch {part!r}; there are: {', '.join(NAMES)}")
    return chosen


def apply(names: str = "all") -> list[str]:
    """Apply the patches of moto's internals that `names` chooses (choose); all it chose."""
    chosen = choose(names)
    for name in chosen:
        PATCHES[name]()
    return chosen


@contextlib.contextmanager
def applied(names: str = "all") -> Iterator[list[str]]:
    """The patches while the block runs, and moto as it ships again after it."""
    keep = len(_replaced)
    try:
        yield apply(names)
    finally:
        undo(keep)
