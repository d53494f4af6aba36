"""moto's server for the local stack, with these documented changes.

1. Speed: moto matches EventBridge rules itself (we keep its matcher), but on every delivery to a
   target it re-parses the same few JSONPath expressions with jsonpath-ng, whose `parse` rebuilds
   its parser tables each time (about 13 ms a call, about 120 ms of CPU per matched target).
   Memoising `parse` lifts moto's 3-7 deliveries per second to well over a hundred. moto imports
   `parse` from `jsonpath_ng.ext` at call time, so replacing that attribute before the server
   starts is enough; parsed expressions are immutable, so sharing them is safe.
2. Speed: moto's SQS checks each received message's retention by computing every attribute of the
   queue (message counts included, each a pass over the queue), so a receive costs O(depth) per
   message and a backlog feeds itself. The check reads the retention period directly instead.
3. Speed: moto's request dispatcher lists its own package directory on disk on every request to
   tell service names from hosts; the listing is taken once.
4. Atomicity: DynamoDB applies each request to an item atomically, moto on a threaded server does
   not (two concurrent UpdateItems that both create an item can lose one's attributes). Requests
   are applied one at a time. moto holds the interpreter lock for nearly all of a request anyway,
   so this costs little; clients must not long-poll SQS (a wait would hold the lock).
5. Speed: moto's DynamoDB UpdateItem cost 25-30 ms of CPU for our message write (16 SET
   actions), most of it in work that repeats: the expression is re-parsed on every request
   (memoised by its text: moto deep-copies the parsed tree before it validates or changes it), two
   validators that check the whole expression run again at every nested node of it (run once, at
   the root, which sees every clause), and each tree walk rebuilds its processor table at every
   node (built once per processor class: the tables' keys are fixed classes), and looks up at every
   node what is fixed for the whole walk (looked up once per walk); and the validator's copy of the
   tree is made by unpickling a pickle taken once when the expression is parsed, several times
   faster than deepcopy on these small objects.
   For an item that does not exist yet, moto validates the expression twice: once against a
   blank item (to fail before creating anything), then again against the created item, and uses
   only the second. The first is skipped; when the second fails, the just-created key-only item
   is removed again, so a failed update still leaves nothing behind.
6. Speed: a Query on a table's own key reads every item of the table, sorted, and then keeps the
   partition asked for: O(table) per query, so it slows as the local stack runs (22 ms at a few
   thousand items). For base-table queries the candidates are taken from that partition alone,
   in the same order; index queries keep moto's way.
7. Speed: moto's response serializer looks up every member of every returned structure through a
   chain of alias providers, rebuilt per lookup (a DynamoDB item of 30 attributes: 300 lookups,
   about half of a GetItem's time). For plain dicts the candidate keys depend only on the picker,
   the member name and its shape, so they are computed once; the lookups that follow are the same.
   And each request lists its handler class's methods with inspect.getmembers to find the action:
   listed once per class (as a frozenset: only membership is asked).
8. Speed: the server is waitress, not moto's (werkzeug's development server). werkzeug closes the
   connection after every response, so each request from a function cost a TCP connection, a new
   thread and an email-module header parse in this process, and a reconnect in the function; with
   keep-alive the whole stack spends about a tenth less CPU per event (bench/e2e.py, and the
   decision record). One difference: waitress drops request headers with an underscore in their
   name, as most servers do, where moto's server keeps them for S3 metadata keys such as
   `x-amz-meta-my_key`; nothing in this stack sends one.
9. Lambda targets: moto raises NotImplementedError when a matched rule targets a Lambda function.
   Such events are handed to the functions' workers over Lambda's Invoke API instead, with the
   target's retry policy and DLQ (motostack.lambda_targets); `GET /_local/deliveries` tells how
   many are still on their way.

10. Speed: requests in AWS's JSON protocol (an X-Amz-Target header, POST to `/`: DynamoDB,
   EventBridge, SQS, Secrets Manager) are handed to the view moto's own dispatcher and URL map
   choose, called as moto's Flask glue calls it, without Flask's request context, URL matching and
   response hooks around it (JsonProtocolFastPath); everything else still goes through Flask. And
   moto's Flask apps are not in debug mode, which built a class on every request with a body
   (Flask's hint for browser form posts), nor add CORS headers (for browsers). About a tenth less
   CPU in this process per event (docs/decisions.md); tests/integration/test_moto_fast_path.py
   sends the same SDK calls both ways and compares the answers.

    python -m motostack.moto_server PORT
"""

from __future__ import annotations

import contextlib
import copy
import cProfile
import functools
import importlib
import inspect
import json
import logging
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any


def apply_speedups() -> None:
    import jsonpath_ng.ext
    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    if not hasattr(jsonpath_ng.ext.parse, "cache_info"):  # type: ignore[attr-defined]
        jsonpath_ng.ext.parse = functools.lru_cache(maxsize=512)(jsonpath_ng.ext.parse)  # type: ignore[attr-defined]

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        retention_period = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention_period + message.sent_timestamp / 1000 > unix_time())

    SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period  # type: ignore[method-assign]

    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules

    _speed_up_update_expressions()
    _speed_up_partition_queries()
    _speed_up_serializer()


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
    table_class.query, table_class.all_items = query, all_items


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
    ddb_models.UpdateExpressionValidator = validator
    backend.update_item = update_item


def _speed_up_serializer() -> None:
    responses: Any = importlib.import_module("moto.core.responses")
    serialize: Any = importlib.import_module("moto.core.serialize")

    if not hasattr(responses.method_names_from_class, "cache_info"):
        listing = responses.method_names_from_class
        responses.method_names_from_class = functools.lru_cache(maxsize=None)(
            lambda cls: frozenset(listing(cls))
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
    picker.__call__ = pick


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

    ast_nodes.Node.find_clauses = find_clauses_once

    class MemoisedParser:
        memoised = True
        make = staticmethod(parse)

    ddb_models.UpdateExpressionParser = MemoisedParser
    ddb_responses.UpdateExpressionParser = MemoisedParser

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

    validators.deepcopy = copy_tree
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

    validators.ActionCountValidator.traverse = count_actions
    validators.OverlappingPathsValidator.traverse = at_root_only(
        validators.OverlappingPathsValidator.check_for_overlapping_paths
    )
    kinds: dict[type, tuple[type, ...]] = {}

    def nodes_to_be_processed(self: Any) -> tuple[type, ...]:
        found = kinds.get(type(self))
        if found is None:
            found = kinds[type(self)] = tuple(self._processing_map())
        return found

    ast_nodes.DepthFirstTraverser.nodes_to_be_processed = nodes_to_be_processed

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

    ast_nodes.DepthFirstTraverser.traverse = traverse  # (the two root-only validators keep theirs)


# Held while moto's state is read or changed: by each request, and by the Lambda-target delivery
# threads when they dead-letter an event.
MOTO_LOCK = threading.Lock()
STATUS_PATH = "/_local/deliveries"
# MOTOSTACK_PROFILE=FILE: profile moto's request handling, written to FILE when the server stops
# (for finding moto's next hot spot: python -m pstats FILE).
PROFILER = cProfile.Profile() if os.environ.get("MOTOSTACK_PROFILE") else None


class OneAtATime:
    """WSGI middleware: one request inside moto at a time; and the delivery status."""

    def __init__(self, app: Callable[..., Iterable[bytes]], status: Callable[[], dict[str, int]]) -> None:
        self._app = app
        self._status = status
        # operation -> [requests, seconds inside moto]: where moto's one core goes.
        self._busy: dict[str, list[float]] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ.get("PATH_INFO") == STATUS_PATH:
            with MOTO_LOCK:
                busy = {op: [int(n), round(s, 3)] for op, (n, s) in sorted(self._busy.items())}
            body = json.dumps({**self._status(), "requests": busy}).encode()
            start_response(
                "200 OK", [("content-type", "application/json"), ("content-length", str(len(body)))]
            )
            return [body]
        operation = environ.get("HTTP_X_AMZ_TARGET") or (
            f"{environ.get('REQUEST_METHOD')} {environ.get('HTTP_HOST', '').split('.')[0]}"
        )
        with MOTO_LOCK:
            started = time.perf_counter()
            if PROFILER is not None:
                PROFILER.enable()
            try:
                return list(self._app(environ, start_response))
            finally:
                if PROFILER is not None:
                    PROFILER.disable()
                entry = self._busy.setdefault(operation, [0, 0.0])
                entry[0] += 1
                entry[1] += time.perf_counter() - started


class JsonProtocolFastPath:
    """WSGI app: moto's own dispatch for JSON-protocol requests, without Flask around it (item 10).

    A request with an X-Amz-Target header to `/` (DynamoDB, EventBridge, SQS, Secrets Manager...)
    goes to the backend app moto's dispatcher picks, and to the view its URL map gives for `/`
    (looked up once per app), called as moto's Flask glue calls it. Everything else (S3's REST
    paths, Lambda's, this stack's status path) goes through moto's Flask apps unchanged.
    """

    def __init__(self, dispatcher: Any) -> None:
        # What each request needs, imported once here rather than on every request.
        from botocore.exceptions import ClientError
        from flask import Response
        from moto.moto_api import recorder
        from werkzeug.exceptions import HTTPException

        self._client_error, self._http_exception = ClientError, HTTPException
        self._response, self._record = Response, recorder._record_request
        self._dispatcher = dispatcher
        self._views: dict[int, Any] = {}

    def _view(self, app: Any, environ: dict[str, Any]) -> Any:
        key = id(app)
        if key not in self._views:
            try:
                endpoint, arguments = app.url_map.bind_to_environ(environ).match()
            except self._http_exception:
                endpoint, arguments = None, {"unmatched": True}
            view = app.view_functions.get(endpoint)
            # Only a plain view of moto's (no URL arguments to pass) can be called directly.
            self._views[key] = view if not arguments and hasattr(view, "callback") else None
        return self._views[key]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if (
            "HTTP_X_AMZ_TARGET" not in environ
            or environ.get("PATH_INFO") != "/"
            or environ.get("REQUEST_METHOD") != "POST"
        ):
            return self._dispatcher(environ, start_response)  # type: ignore[no-any-return]
        app = self._dispatcher.get_application(environ)
        view = self._view(app, environ)
        if view is None:
            return app(environ, start_response)  # type: ignore[no-any-return]
        request = app.request_class(environ)
        try:
            self._record(request)
            result = view.callback(request, request.raw_url, dict(request.headers))
        except self._client_error as exc:  # as moto's Flask glue answers it
            result = 400, {}, exc.response["Error"]["Message"]
        except self._http_exception as exc:
            return exc(environ, start_response)
        status, headers, content = result if len(result) == 3 else (200, {}, result)
        response = self._response(response=content, status=status, headers=headers)
        return response(environ, start_response)


def _backend_apps_without_debug() -> None:
    """moto's server runs its Flask apps in debug mode, which builds a class on every request that
    reads a body (Flask's enctype hint for browser forms), and adds CORS headers for browsers;
    neither is anything an SDK client reads (item 10)."""
    from moto.moto_server import werkzeug_app

    create = werkzeug_app.create_backend_app
    if getattr(create, "without_debug", False):
        return

    def create_backend_app(service: Any) -> Any:
        app = create(service)
        app.debug = False
        return app

    create_backend_app.without_debug = True  # type: ignore[attr-defined]
    werkzeug_app.create_backend_app = create_backend_app
    setattr(werkzeug_app, "DISABLE_GLOBAL_CORS", True)  # noqa: B010 (read when an app is created)


def dead_letter(queue_arn: str, body: str, attributes: dict[str, Any]) -> None:
    """Send to an SQS queue of this server, as EventBridge sends to a rule target's DLQ."""
    from moto.sqs.models import sqs_backends

    _, _, _, region, account, name = queue_arn.split(":", 5)
    with MOTO_LOCK:
        sqs_backends[account][region].send_message(
            queue_name=name, message_body=body, message_attributes=attributes
        )


def main(argv: list[str]) -> None:
    apply_speedups()
    import waitress
    from moto.moto_server import werkzeug_app
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    # All state is in memory and goes with the process: nothing to flush, so leave at once.
    def leave(*_: Any) -> None:
        if PROFILER is not None:
            PROFILER.dump_stats(os.environ["MOTOSTACK_PROFILE"])
        os._exit(0)

    signal.signal(signal.SIGTERM, leave)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth": moto is serial
    from motostack.lambda_targets import forwarder_from_env, patch_lambda_targets

    forwarder = forwarder_from_env(dead_letter)
    _backend_apps_without_debug()
    app = JsonProtocolFastPath(DomainDispatcherApplication(werkzeug_app.create_backend_app))
    with patch_lambda_targets(forwarder.dispatch):
        waitress.serve(
            OneAtATime(app, forwarder.stats),
            host="127.0.0.1",
            port=int(argv[0]),
            threads=8,  # requests wait for moto's lock in these; the bodies are read before
            connection_limit=1000,  # every function keeps a pool of connections per client
            asyncore_use_poll=True,
            ident="moto",
            _quiet=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
