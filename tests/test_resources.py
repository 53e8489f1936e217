"""Resources: definition, lazy once-per-run setup, teardown order, failures, config, threads."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import attrs
import httpx
import pytest

from asyncdag import (
    ConfigError,
    DefinitionError,
    EventType,
    InitResourceContext,
    ResourceDefinition,
    ResourceInitError,
    RunStatus,
    StepStatus,
    UnknownResourceError,
    execute_pipeline_async,
    open_run,
    pipeline,
    resource,
    solid,
)
from asyncdag._definitions import check_resource_graph

pytestmark = pytest.mark.anyio


def tracked(name: str, log: list[str], *, value: Any = None) -> ResourceDefinition:
    """An async-generator resource that records its setup and teardown in ``log``."""

    async def factory() -> AsyncIterator[Any]:
        log.append(f"up {name}")
        try:
            yield name if value is None else value
        finally:
            log.append(f"down {name}")

    factory.__name__ = name
    return resource(factory)


def event_types(result: Any) -> list[tuple[str, str | None, Any]]:
    """(type, step key, resource) for every resource and step lifecycle event, in order."""
    return [
        (e.type.value, e.step_key, (e.data or {}).get("resource"))
        for e in result.events
        if e.type.value.startswith(("RESOURCE_", "STEP_"))
    ]


# --- definitions -----------------------------------------------------------------------------


def test_resource_decorator_keeps_name_description_config_and_needs() -> None:
    @resource(config_schema={"timeout": float}, required_resources="db")
    def http(context: InitResourceContext) -> str:
        """A shared HTTP session."""
        return "client"

    assert isinstance(http, ResourceDefinition)
    assert http.name == "http"
    assert http.description == "A shared HTTP session."
    assert http.config_schema == {"timeout": float}
    assert http.required_resources == frozenset({"db"})


async def test_unbound_resource_is_a_definition_error_before_anything_runs() -> None:
    ran: list[str] = []

    @solid(required_resources={"http"})
    def fetch(context: Any) -> None:
        ran.append("fetch")

    @solid
    def other() -> None:
        ran.append("other")

    @pipeline  # defining it is fine: a run may be given the key (resources={...})
    def p() -> None:
        other()
        fetch()

    with pytest.raises(DefinitionError, match=r"solid 'fetch'.*\['http'\].*resources=") as caught:
        await execute_pipeline_async(p)
    with pytest.raises(DefinitionError, match=r"solid 'fetch'"):
        async with open_run(p, resources={"db": object()}):
            pass
    assert "bound: ['db']" not in str(caught.value)
    assert ran == []


async def test_unbound_need_of_a_resource_is_a_definition_error_before_anything_runs() -> None:
    ran: list[str] = []

    @resource(required_resources={"db"})
    def cache(context: InitResourceContext) -> str:
        ran.append("cache")
        return "cache"

    @solid(required_resources={"cache"})
    def use(context: Any) -> None:
        ran.append("use")

    @pipeline(resources={"cache": cache})
    def p() -> None:
        use()

    with pytest.raises(DefinitionError, match=r"resource 'cache' requires resource 'db'"):
        await execute_pipeline_async(p)
    assert ran == []


def test_check_resource_graph_names_the_cycle() -> None:
    a = resource(required_resources={"b"})(lambda context: "a")
    b = resource(required_resources={"c"})(lambda context: "b")
    c = resource(required_resources={"a"})(lambda context: "c")
    with pytest.raises(DefinitionError, match=r"cycle: a -> b -> c -> a"):
        check_resource_graph("pipeline 'p'", {"a": a, "b": b, "c": c})
    # A diamond is not a cycle.
    top = resource(required_resources={"left", "right"})(lambda context: "top")
    left = resource(required_resources={"base"})(lambda context: "left")
    right = resource(required_resources={"base"})(lambda context: "right")
    base = resource(lambda: "base")
    check_resource_graph("pipeline 'p'", {"top": top, "left": left, "right": right, "base": base})


def test_binding_something_that_is_not_a_resource_is_a_definition_error() -> None:
    with pytest.raises(DefinitionError, match=r"resource 'http'.*@resource"):
        check_resource_graph("pipeline 'p'", {"http": "not a resource"})


async def test_resource_cycle_is_a_definition_error_before_anything_runs() -> None:
    ran: list[str] = []
    a = resource(required_resources={"b"})(lambda context: ran.append("a"))
    b = resource(required_resources={"a"})(lambda context: ran.append("b"))

    @solid(required_resources={"a"})
    def use(context: Any) -> None:
        ran.append("use")

    # Found when the pipeline is defined, or at the latest when the run is opened.
    with pytest.raises(DefinitionError, match=r"cycle: a -> b -> a"):

        @pipeline(resources={"a": a, "b": b})
        def p() -> None:
            use()

        await execute_pipeline_async(p)
    assert ran == []


# --- setup ----------------------------------------------------------------------------------


async def test_resource_is_set_up_lazily_before_the_first_step_that_needs_it() -> None:
    log: list[str] = []

    @solid
    def first() -> int:
        log.append("first")
        return 1

    @solid(required_resources={"r"})
    def second(context: Any, x: int) -> str:
        log.append(f"second sees {context.resources.r}")
        return context.resources.r

    @pipeline(resources={"r": tracked("r", log), "unused": tracked("unused", log)})
    def p() -> None:
        second(first())

    result = await execute_pipeline_async(p)
    assert result.success
    assert log == ["first", "up r", "second sees r", "down r"]
    assert event_types(result) == [
        ("STEP_START", "first", None),
        ("STEP_SUCCESS", "first", None),
        ("RESOURCE_INIT_STARTED", None, "r"),
        ("RESOURCE_INIT_SUCCESS", None, "r"),
        ("STEP_START", "second", None),
        ("STEP_SUCCESS", "second", None),
        ("RESOURCE_TEARDOWN", None, "r"),
    ]


async def test_resource_is_set_up_once_when_many_concurrent_steps_need_it() -> None:
    setups: list[object] = []
    seen: list[object] = []

    @resource
    async def shared() -> AsyncIterator[object]:
        # Yield to the loop a few times so the other steps arrive while setup is under way.
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        value = object()
        setups.append(value)
        yield value

    @solid(required_resources={"shared"})
    async def use(context: Any) -> None:
        seen.append(context.resources.shared)

    @pipeline(resources={"shared": shared})
    def p() -> None:
        for _ in range(20):
            use()

    result = await execute_pipeline_async(p)
    assert result.success
    assert len(setups) == 1
    assert len(seen) == 20
    assert all(value is setups[0] for value in seen)
    inits = [e for e in result.events if e.type is EventType.RESOURCE_INIT_STARTED]
    assert len(inits) == 1


async def test_resources_depending_on_resources_are_set_up_dependencies_first() -> None:
    log: list[str] = []

    @resource
    def db() -> Iterator[dict[str, str]]:
        log.append("up db")
        yield {"dsn": "sqlite://"}
        log.append("down db")

    @resource(required_resources={"db"})
    async def repo(context: InitResourceContext) -> AsyncIterator[str]:
        log.append("up repo")
        yield f"repo on {context.resources.db['dsn']}"
        log.append("down repo")

    @solid(required_resources={"repo"})
    def use(context: Any) -> str:
        return context.resources.repo

    @pipeline(resources={"db": db, "repo": repo})
    def p() -> None:
        use()

    result = await execute_pipeline_async(p)
    assert result.output_for_solid("use") == "repo on sqlite://"
    assert log == ["up db", "up repo", "down repo", "down db"]


async def test_a_resource_reaches_only_the_resources_it_declares() -> None:
    @resource
    def db() -> str:
        return "db"

    @resource
    def sneaky(context: InitResourceContext) -> str:
        return context.resources.db

    @solid(required_resources={"db", "sneaky"})
    def use(context: Any) -> None:
        pass

    @pipeline(resources={"db": db, "sneaky": sneaky})
    def p() -> None:
        use()

    result = await execute_pipeline_async(p, raise_on_error=False)
    assert result.status is RunStatus.FAILURE
    error = result.exception_for_step("use")
    assert isinstance(error, ResourceInitError)
    assert error.resource_key == "sneaky"
    assert "resource 'sneaky' used resource 'db' without declaring it" in str(error)


# --- every kind of resource ----------------------------------------------------------------


def kinds(log: list[str]) -> dict[str, ResourceDefinition]:
    """One resource of each supported shape, each yielding its own name and logging teardown."""

    @resource
    def sync_generator() -> Iterator[str]:
        yield "sync_generator"
        log.append("down sync_generator")

    @resource
    async def async_generator() -> AsyncIterator[str]:
        yield "async_generator"
        log.append("down async_generator")

    @resource
    def plain_function(context: InitResourceContext) -> str:
        return "plain_function"

    @resource
    async def coroutine_function() -> str:
        return "coroutine_function"

    class SyncManager:
        def __init__(self, context: InitResourceContext) -> None:
            self.key = context.key

        def __enter__(self) -> str:
            return self.key

        def __exit__(self, *exc: object) -> None:
            log.append(f"down {self.key}")

    class AsyncManager:
        async def __aenter__(self) -> str:
            return "async_manager_class"

        async def __aexit__(self, *exc: object) -> None:
            log.append("down async_manager_class")

    return {
        "sync_generator": sync_generator,
        "async_generator": async_generator,
        "plain_function": plain_function,
        "coroutine_function": coroutine_function,
        "sync_manager_class": resource(SyncManager),
        "async_manager_class": resource(AsyncManager),
    }


WITH_TEARDOWN = {
    "sync_generator",
    "async_generator",
    "sync_manager_class",
    "async_manager_class",
}


@pytest.mark.parametrize("kind", sorted(kinds([])))
async def test_each_kind_of_resource_gives_its_value_and_is_torn_down(kind: str) -> None:
    log: list[str] = []

    @solid(required_resources={kind})
    async def use(context: Any) -> Any:
        assert log == []  # not torn down while a step uses it
        return context.resources[kind]

    @pipeline(resources={kind: kinds(log)[kind]})
    def p() -> None:
        use()

    result = await execute_pipeline_async(p)
    assert result.output_for_solid("use") == kind
    assert log == ([f"down {kind}"] if kind in WITH_TEARDOWN else [])


@pytest.mark.parametrize("form", ["sync", "async"])
async def test_a_returned_context_manager_is_used_as_it_is_never_entered_nor_exited(
    form: str,
) -> None:
    log: list[str] = []

    class Managed:
        def __enter__(self) -> None:
            log.append("enter")

        def __exit__(self, *exc: object) -> None:
            log.append("exit")

        async def __aenter__(self) -> None:
            log.append("aenter")

        async def __aexit__(self, *exc: object) -> None:
            log.append("aexit")

    shared = Managed()

    def sync_factory() -> Managed:
        return shared

    async def async_factory() -> Managed:
        return shared

    @solid(required_resources={"shared"})
    async def use(context: Any) -> Any:
        return context.resources.shared

    @pipeline(resources={"shared": resource(sync_factory if form == "sync" else async_factory)})
    def p() -> None:
        use()

    result = await execute_pipeline_async(p)
    assert result.output_for_solid("use") is shared
    assert log == []


async def test_a_resource_returning_the_apps_shared_http_client_serves_run_after_run() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=request.url.path)

    async with httpx.AsyncClient(
        base_url="http://app", transport=httpx.MockTransport(handler)
    ) as client:

        @resource
        def http() -> httpx.AsyncClient:
            return client  # the application's: it opens and closes it, not the run

        @solid(required_resources={"http"})
        async def fetch(context: Any, path: str) -> str:
            return (await context.resources.http.get(path)).text

        @pipeline(resources={"http": http})
        def p() -> None:
            fetch("/page")

        for _ in range(3):  # the second run used to fail: "Cannot reopen a client instance"
            result = await execute_pipeline_async(p)
            assert result.output_for_solid("fetch") == "/page"
            assert not client.is_closed


async def test_sync_setup_and_teardown_run_off_the_event_loop_thread() -> None:
    threads: dict[str, int] = {}

    @resource
    def blocking() -> Iterator[str]:
        threads["setup"] = threading.get_ident()
        yield "conn"
        threads["teardown"] = threading.get_ident()

    @solid(required_resources={"blocking"})
    async def use(context: Any) -> None:
        threads["loop"] = threading.get_ident()

    @pipeline(resources={"blocking": blocking})
    def p() -> None:
        use()

    await execute_pipeline_async(p)
    assert threads["setup"] != threads["loop"]
    assert threads["teardown"] != threads["loop"]


# --- sharing -------------------------------------------------------------------------------


@attrs.define
class Counter:
    """A thread-safe counter standing in for a sync client (a DB pool, a requests session)."""

    lock: threading.Lock = attrs.field(factory=threading.Lock)
    count: int = 0
    threads: set[int] = attrs.field(factory=set)
    closed: bool = False

    def hit(self) -> int:
        with self.lock:
            self.count += 1
            self.threads.add(threading.get_ident())
            return self.count


async def test_a_sync_resource_is_shared_by_sync_solids_in_worker_threads() -> None:
    counters: list[Counter] = []
    loop_thread = threading.get_ident()

    @resource
    def counter() -> Iterator[Counter]:
        value = Counter()
        counters.append(value)
        yield value
        value.closed = True

    @solid(required_resources={"counter"})
    def hit(context: Any) -> int:
        assert threading.get_ident() != loop_thread
        assert not context.resources.counter.closed
        return context.resources.counter.hit()

    @pipeline(resources={"counter": counter})
    def p() -> None:
        for _ in range(12):
            hit()

    result = await execute_pipeline_async(p, max_concurrency=4)
    assert result.success
    assert len(counters) == 1
    assert counters[0].count == 12
    assert loop_thread not in counters[0].threads
    assert sorted(result.output_for_solid(key) for key in p.nodes) == list(range(1, 13))
    assert counters[0].closed


async def test_an_async_http_client_resource_serves_many_concurrent_steps() -> None:
    steps = 8
    in_flight = 0
    peak = 0
    all_in = anyio.Event()
    clients: list[httpx.AsyncClient] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight == steps:
            all_in.set()
        # Every request waits until all are in flight at once: only one shared client
        # used by concurrently running steps on the run's loop can get there.
        await all_in.wait()
        in_flight -= 1
        return httpx.Response(200, text=request.url.path)

    @resource(config_schema={"base_url": str})
    async def http(context: InitResourceContext) -> AsyncIterator[httpx.AsyncClient]:
        async with httpx.AsyncClient(
            base_url=context.resource_config["base_url"], transport=httpx.MockTransport(handler)
        ) as client:
            clients.append(client)
            yield client

    @solid(required_resources={"http"})
    async def fetch(context: Any, path: str) -> str:
        response = await context.resources.http.get(path)
        return response.text

    @pipeline(resources={"http": http})
    def p() -> None:
        for i in range(steps):
            fetch.alias(f"fetch_{i}")(f"/item/{i}")

    with anyio.fail_after(30):  # a hang guard, not a timing assertion
        result = await execute_pipeline_async(
            p, {"resources": {"http": {"config": {"base_url": "http://test"}}}}
        )
    assert result.success
    assert peak == steps
    assert [result.output_for_solid(f"fetch_{i}") for i in range(steps)] == [
        f"/item/{i}" for i in range(steps)
    ]
    assert len(clients) == 1
    assert clients[0].is_closed


# --- teardown ------------------------------------------------------------------------------


async def test_teardown_is_in_reverse_order_of_setup_on_success() -> None:
    log: list[str] = []

    @solid(required_resources={"a"})
    def one(context: Any) -> int:
        return 1

    @solid(required_resources={"c"})
    def two(context: Any, x: int) -> int:
        return 2

    @solid(required_resources={"b"})
    def three(context: Any, x: int) -> int:
        return 3

    @pipeline(resources={name: tracked(name, log) for name in "abc"})
    def p() -> None:
        three(two(one()))

    result = await execute_pipeline_async(p)
    assert result.success
    assert log == ["up a", "up c", "up b", "down b", "down c", "down a"]


async def test_teardown_is_in_reverse_order_when_a_step_fails() -> None:
    log: list[str] = []

    @solid(required_resources={"a"})
    def one(context: Any) -> int:
        return 1

    @solid(required_resources={"b"})
    def boom(context: Any, x: int) -> int:
        raise ValueError("boom")

    @pipeline(resources={name: tracked(name, log) for name in "ab"})
    def p() -> None:
        boom(one())

    result = await execute_pipeline_async(p, raise_on_error=False)
    assert result.status is RunStatus.FAILURE
    assert log == ["up a", "up b", "down b", "down a"]
    with pytest.raises(ValueError, match="boom"):
        await execute_pipeline_async(p)
    assert log[4:] == ["up a", "up b", "down b", "down a"]


async def test_teardown_is_in_reverse_order_when_the_run_is_cancelled() -> None:
    log: list[str] = []
    started = anyio.Event()

    @solid(required_resources={"a"})
    def one(context: Any) -> int:
        return 1

    @solid(required_resources={"b"})
    async def forever(context: Any, x: int) -> None:
        started.set()
        await anyio.sleep_forever()

    @pipeline(resources={name: tracked(name, log) for name in "ab"})
    def p() -> None:
        forever(one())

    async with open_run(p) as run:
        await started.wait()
        assert log == ["up a", "up b"]
        run.cancel()
    result = await run.result()
    assert result.status is RunStatus.CANCELED
    assert result.step_result("forever").status is StepStatus.CANCELED
    assert log == ["up a", "up b", "down b", "down a"]
    assert [e.type for e in result.events][-3:] == [
        EventType.RESOURCE_TEARDOWN,
        EventType.RESOURCE_TEARDOWN,
        EventType.RUN_CANCELED,
    ]


async def test_teardown_happens_when_an_outer_cancel_scope_cancels_the_run() -> None:
    log: list[str] = []
    started = anyio.Event()
    awaited_in_teardown: list[bool] = []

    @resource
    async def slow_close() -> AsyncIterator[str]:
        log.append("up slow_close")
        yield "slow_close"
        # Teardown may await even though the run is being cancelled.
        await anyio.sleep(0)
        awaited_in_teardown.append(False)
        log.append("down slow_close")

    @solid(required_resources={"a", "slow_close"})
    async def forever(context: Any) -> None:
        started.set()
        await anyio.sleep_forever()

    @pipeline(resources={"a": tracked("a", log), "slow_close": slow_close})
    def p() -> None:
        forever()

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(execute_pipeline_async, p)
            await started.wait()
            scope.cancel()
    assert scope.cancelled_caught
    assert log == ["up a", "up slow_close", "down slow_close", "down a"]
    assert awaited_in_teardown == [False]


async def test_cancelling_during_an_async_setup_unwinds_it_and_tears_down_the_rest() -> None:
    log: list[str] = []
    entered = anyio.Event()

    @resource
    async def hangs() -> AsyncIterator[str]:
        log.append("setting up hangs")
        entered.set()
        try:
            await anyio.sleep_forever()
        finally:
            log.append("setup of hangs unwound")
        yield "never"  # pragma: no cover

    @solid(required_resources={"a", "hangs"})
    async def use(context: Any) -> None:
        log.append("use ran")

    @pipeline(resources={"a": tracked("a", log), "hangs": hangs})
    def p() -> None:
        use()

    async with open_run(p) as run:
        await entered.wait()
        run.cancel()
    result = await run.result()
    assert result.status is RunStatus.CANCELED
    assert result.step_result("use").status is StepStatus.CANCELED
    assert log == ["up a", "setting up hangs", "setup of hangs unwound", "down a"]


async def test_a_sync_setup_finishing_after_cancellation_is_still_torn_down() -> None:
    log: list[str] = []
    entered = anyio.Event()
    release = threading.Event()

    @resource
    def slow_sync() -> Iterator[str]:
        anyio.from_thread.run_sync(entered.set)
        release.wait()  # a thread cannot be interrupted: setup completes after the cancel
        log.append("up slow_sync")
        yield "slow_sync"
        log.append("down slow_sync")

    @solid(required_resources={"slow_sync"})
    async def use(context: Any) -> None:
        log.append("use ran")

    @pipeline(resources={"slow_sync": slow_sync})
    def p() -> None:
        use()

    try:
        async with open_run(p) as run:
            await entered.wait()
            run.cancel()
            release.set()
    finally:
        release.set()
    result = await run.result()
    assert result.status is RunStatus.CANCELED
    assert "use ran" not in log
    assert log == ["up slow_sync", "down slow_sync"]


async def test_a_failing_teardown_is_reported_by_name_and_the_others_still_run() -> None:
    log: list[str] = []

    @resource
    def fragile() -> Iterator[str]:
        yield "fragile"
        raise OSError("socket already gone")

    @solid(required_resources={"a", "fragile", "z"})
    def use(context: Any) -> None:
        pass

    @pipeline(resources={"a": tracked("a", log), "fragile": fragile, "z": tracked("z", log)})
    def p() -> None:
        use()

    result = await execute_pipeline_async(p)
    assert result.success
    assert log == ["up a", "up z", "down z", "down a"]
    failures = [e for e in result.events if e.type is EventType.RESOURCE_TEARDOWN_FAILURE]
    assert len(failures) == 1
    assert failures[0].data is not None and failures[0].data["resource"] == "fragile"
    assert "fragile" in failures[0].message and "socket already gone" in failures[0].message
    assert [e.data["resource"] for e in result.events if e.type is EventType.RESOURCE_TEARDOWN] == [
        "z",
        "a",
    ]


# --- setup failure -------------------------------------------------------------------------


def failing_pipeline(log: list[str], setups: list[str]) -> Any:
    @resource
    def bad() -> str:
        setups.append("bad")
        raise ConnectionError("database is down")

    @solid(required_resources={"good"})
    def first(context: Any) -> int:
        log.append("first")
        return 1

    @solid(required_resources={"good", "bad"})
    def needs_bad(context: Any, x: int) -> int:
        log.append("needs_bad")
        return 2

    @solid(required_resources={"bad"})
    def also_needs_bad(context: Any, x: int) -> int:
        log.append("also_needs_bad")
        return 3

    @solid
    def after(y: int) -> None:
        log.append("after")

    @solid
    def independent() -> None:
        log.append("independent")

    @pipeline(resources={"good": tracked("good", log), "bad": bad})
    def p() -> None:
        x = first()
        after(needs_bad(x))
        also_needs_bad(x)
        independent()

    return p


async def test_a_failed_setup_skips_the_steps_that_need_it_and_tears_down_the_rest() -> None:
    log: list[str] = []
    setups: list[str] = []
    p = failing_pipeline(log, setups)

    result = await execute_pipeline_async(p, raise_on_error=False, max_concurrency=1)
    assert result.status is RunStatus.FAILURE
    # Steps needing "bad" never started; one setup attempt served both.
    assert "needs_bad" not in log and "also_needs_bad" not in log and "after" not in log
    assert setups == ["bad"]
    assert {"first", "independent"} <= set(log)
    assert log[-1] == "down good"
    statuses = {key: step.status for key, step in result.step_results.items()}
    assert statuses == {
        "first": StepStatus.SUCCESS,
        "needs_bad": StepStatus.SKIPPED,
        "also_needs_bad": StepStatus.SKIPPED,
        "after": StepStatus.SKIPPED,
        "independent": StepStatus.SUCCESS,
    }
    started = {e.step_key for e in result.events if e.type is EventType.STEP_START}
    assert started == {"first", "independent"}
    for key in ("needs_bad", "also_needs_bad"):
        error = result.exception_for_step(key)
        assert isinstance(error, ResourceInitError)
        assert error.resource_key == "bad"
        assert isinstance(error.__cause__, ConnectionError)
    failures = [e for e in result.events if e.type is EventType.RESOURCE_INIT_FAILURE]
    assert len(failures) == 1
    assert failures[0].data is not None and failures[0].data["resource"] == "bad"
    assert "'bad'" in failures[0].message and "database is down" in failures[0].message
    assert failures[0].error is not None and failures[0].error.type == "ConnectionError"


async def test_a_failed_setup_raises_resource_init_error_with_raise_on_error() -> None:
    log: list[str] = []
    p = failing_pipeline(log, [])
    with pytest.raises(ResourceInitError, match=r"resource 'bad' failed during setup") as info:
        await execute_pipeline_async(p)
    assert info.value.resource_key == "bad"
    assert log[-1] == "down good"


async def test_a_failed_dependency_fails_the_resources_built_on_it() -> None:
    @resource
    def db() -> str:
        raise ConnectionError("no route to host")

    @resource(required_resources={"db"})
    def repo(context: InitResourceContext) -> str:
        raise AssertionError("never built")

    @solid(required_resources={"repo"})
    def use(context: Any) -> None:
        pass

    @pipeline(resources={"db": db, "repo": repo})
    def p() -> None:
        use()

    result = await execute_pipeline_async(p, raise_on_error=False)
    assert result.step_result("use").status is StepStatus.SKIPPED
    failed = [
        e.data["resource"] for e in result.events if e.type is EventType.RESOURCE_INIT_FAILURE
    ]
    assert failed == ["db", "repo"]
    error = result.exception_for_step("use")
    assert isinstance(error, ResourceInitError) and error.resource_key == "repo"
    assert "no route to host" in str(error)


# --- resources the host gives a run (resources={...}) --------------------------------------------


async def test_a_given_client_is_used_as_it_is_and_left_open_for_the_next_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=request.url.path)

    async def no_threads(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a given value needs no worker thread")

    @solid(required_resources={"http"})
    async def fetch(context: Any, path: str) -> str:
        return (await context.resources.http.get(path)).text

    @pipeline  # binds nothing: the host gives "http" to each run
    def p() -> None:
        fetch("/a")

    async with httpx.AsyncClient(
        base_url="http://app", transport=httpx.MockTransport(handler)
    ) as client:
        monkeypatch.setattr(anyio.to_thread, "run_sync", no_threads)
        for _ in range(2):
            result = await execute_pipeline_async(p, resources={"http": client})
            assert result.output_for_solid("fetch") == "/a"
            assert not client.is_closed
    # No setup and no teardown: the run did not build it, so it has nothing to report.
    assert not [e for e in result.events if e.type.value.startswith("RESOURCE_")]


async def test_a_given_value_replaces_the_pipelines_definition_and_its_config() -> None:
    built: list[Any] = []
    p = http_pipeline(built)  # "http" requires config (base_url) when the run builds it

    async with open_run(p, resources={"http": "the host's client"}) as run:
        pass
    result = await run.result()
    assert result.output_for_solid("use") == "the host's client"
    assert built == []
    # An entry for a given key (the pipeline's default config, say) is not an error either.
    again = await execute_pipeline_async(
        p,
        {"resources": {"http": {"config": {"base_url": "http://x"}}}},
        resources={"http": "given"},
    )
    assert again.output_for_solid("use") == "given"
    assert built == []


async def test_a_definition_given_to_a_run_is_set_up_and_torn_down_by_it() -> None:
    log: list[str] = []

    @solid(required_resources={"db"})
    async def use(context: Any) -> Any:
        return context.resources.db

    @pipeline(resources={"db": tracked("db", log, value="pipeline's")})
    def p() -> None:
        use()

    result = await execute_pipeline_async(p, resources={"db": tracked("test_db", log)})
    assert result.output_for_solid("use") == "test_db"
    assert log == ["up test_db", "down test_db"]


async def test_a_pipeline_resource_may_require_a_key_the_run_gives() -> None:
    @resource(required_resources={"settings"})
    def client(context: InitResourceContext) -> str:
        return f"client for {context.resources.settings['url']}"

    @solid(required_resources={"client"})
    def use(context: Any) -> str:
        return context.resources.client

    @pipeline(resources={"client": client})
    def p() -> None:
        use()

    result = await execute_pipeline_async(p, resources={"settings": {"url": "http://x"}})
    assert result.output_for_solid("use") == "client for http://x"


async def test_concurrent_runs_each_see_the_values_they_were_given() -> None:
    arrived = 0
    together = anyio.Event()

    @solid(required_resources={"tenant"})
    async def who(context: Any) -> str:
        nonlocal arrived
        arrived += 1
        if arrived == 3:
            together.set()
        await together.wait()  # the three runs are in flight at once
        return context.resources.tenant

    @pipeline
    def p() -> None:
        who()

    results: dict[str, str] = {}

    async def run(tenant: str) -> None:
        result = await execute_pipeline_async(p, resources={"tenant": tenant})
        results[tenant] = result.output_for_solid("who")

    with anyio.fail_after(30):  # a hang guard, not a timing assertion
        async with anyio.create_task_group() as tg:
            for tenant in ("a", "b", "c"):
                tg.start_soon(run, tenant)
    assert results == {"a": "a", "b": "b", "c": "c"}


async def test_a_solid_still_sees_only_the_given_keys_it_declares() -> None:
    @solid(required_resources={"http"})
    def peek(context: Any) -> Any:
        return context.resources.db

    @pipeline
    def p() -> None:
        peek()

    result = await execute_pipeline_async(
        p, resources={"http": "client", "db": "pool"}, raise_on_error=False
    )
    error = result.step_result("peek").error
    assert error is not None and "used resource 'db' without declaring it" in error.message


async def test_a_given_key_that_is_not_a_name_is_a_definition_error() -> None:
    @solid
    def noop() -> None:
        pass

    @pipeline
    def p() -> None:
        noop()

    with pytest.raises(DefinitionError, match=r"resources= keys .* got 1"):
        await execute_pipeline_async(p, resources={1: "client"})  # type: ignore[dict-item]


# --- config and the init context -------------------------------------------------------------


@attrs.frozen
class HttpConfig:
    base_url: str
    timeout: float = 5.0


def http_pipeline(seen: list[Any]) -> Any:
    @resource(config_schema=HttpConfig)
    def http(context: InitResourceContext) -> str:
        seen.append(context.resource_config)
        context.log.info("connecting to %s", context.resource_config.base_url)
        return f"client for {context.resource_config.base_url} (run {context.run_id})"

    @solid(required_resources={"http"})
    def use(context: Any) -> str:
        return context.resources.http

    @pipeline(resources={"http": http})
    def p() -> None:
        use()

    return p


async def test_resource_config_is_validated_and_reaches_the_init_context() -> None:
    seen: list[Any] = []
    p = http_pipeline(seen)
    result = await execute_pipeline_async(
        p, {"resources": {"http": {"config": {"base_url": "http://x"}}}}
    )
    assert seen == [HttpConfig(base_url="http://x", timeout=5.0)]
    assert result.output_for_solid("use") == f"client for http://x (run {result.run_id})"
    logs = [e for e in result.events if e.type is EventType.LOG]
    assert [(e.message, e.step_key, e.data) for e in logs] == [
        ("connecting to http://x", None, {"resource": "http"})
    ]


async def test_bad_resource_config_is_a_config_error_and_nothing_runs() -> None:
    seen: list[Any] = []
    p = http_pipeline(seen)
    with pytest.raises(ConfigError) as info:
        await execute_pipeline_async(
            p, {"resources": {"http": {"config": {"base_url": "http://x", "timeout": "soon"}}}}
        )
    assert [error.path for error in info.value.errors] == ["resources.http.config.timeout"]
    assert "resources.http.config.timeout" in str(info.value)
    assert seen == []


# --- reaching resources from a solid ---------------------------------------------------------


async def test_a_solid_reaching_an_undeclared_resource_fails_naming_solid_and_resource() -> None:
    @resource
    def secret() -> str:
        return "s3cr3t"

    @resource
    def public() -> str:
        return "hello"

    @solid(required_resources={"public"})
    def declares_other(context: Any) -> str:
        return context.resources.secret

    @solid
    def declares_none(context: Any) -> str:
        return context.resources.secret

    @pipeline(resources={"secret": secret, "public": public})
    def p() -> None:
        declares_other()
        declares_none()

    result = await execute_pipeline_async(p, raise_on_error=False)
    for key in ("declares_other", "declares_none"):
        assert result.step_result(key).status is StepStatus.FAILURE
        error = result.exception_for_step(key)
        assert isinstance(error, DefinitionError)
        assert f"solid {key!r} used resource 'secret' without declaring it" in str(error)
        assert "required_resources={'secret'}" in str(error)


async def test_hasattr_and_getattr_with_a_default_work_on_undeclared_resources() -> None:
    @resource
    def cache() -> dict[str, int]:
        return {"hits": 0}

    @solid(required_resources={"cache"})
    async def probe(context: Any) -> tuple[bool, bool, Any, Any]:
        return (
            hasattr(context.resources, "cache"),
            hasattr(context.resources, "db"),
            getattr(context.resources, "db", None),
            getattr(context.resources, "cache", None),
        )

    @solid
    def catches(context: Any) -> str:
        try:
            return str(context.resources.db)
        except UnknownResourceError as error:  # an AttributeError and a DefinitionError
            assert isinstance(error, AttributeError) and isinstance(error, DefinitionError)
            return str(error)

    @pipeline(resources={"cache": cache})
    def p() -> None:
        probe()
        catches()

    result = await execute_pipeline_async(p)
    assert result.output_for_solid("probe") == (True, False, None, {"hits": 0})
    assert "solid 'catches' used resource 'db' without declaring it" in result.output_for_solid(
        "catches"
    )


async def test_a_solid_sees_only_its_declared_resources() -> None:
    @solid(required_resources={"a"})
    def look(context: Any) -> tuple[bool, bool, list[str]]:
        return "a" in context.resources, "b" in context.resources, dir(context.resources)

    log: list[str] = []

    @pipeline(resources={"a": tracked("a", log), "b": tracked("b", log)})
    def p() -> None:
        look()

    result = await execute_pipeline_async(p)
    assert result.output_for_solid("look") == (True, False, ["a"])
    assert log == ["up a", "down a"]


# --- resources holding a task group across their yield -----------------------------------------


def heartbeat(log: list[str]) -> ResourceDefinition:
    """A resource that keeps a background task (a task group) open while it is in use."""

    @resource
    async def heart() -> AsyncIterator[str]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.sleep_forever)
            log.append("up heart")
            yield "beat"
            tg.cancel_scope.cancel()
        log.append("down heart")

    return heart


def recorder() -> tuple[list[tuple[Any, Any]], Any]:
    events: list[tuple[Any, Any]] = []

    def emit(type: Any, step_key: Any, level: Any, message: Any, data: Any) -> None:
        events.append((type, (data or {}).get("resource")))

    return events, emit


async def test_a_hosted_manager_runs_each_resource_in_a_task_of_its_own() -> None:
    from asyncdag._engine import ResourceManager

    log: list[str] = []
    events, emit = recorder()
    definitions = {"heart": heartbeat(log), "a": tracked("a", log)}
    manager = ResourceManager(definitions, {}, run_id="r", emit=emit)
    async with manager.hosted():
        # Set up from a step-like task that ends long before teardown.
        async with anyio.create_task_group() as steps:
            steps.start_soon(manager.ensure, {"a", "heart"})
        assert manager.values == {"a": "a", "heart": "beat"}
        assert log == ["up a", "up heart"]
    assert log == ["up a", "up heart", "down heart", "down a"]
    assert [e for e in events if e[0] is EventType.RESOURCE_TEARDOWN] == [
        (EventType.RESOURCE_TEARDOWN, "heart"),
        (EventType.RESOURCE_TEARDOWN, "a"),
    ]


async def test_a_hosted_manager_reports_setup_and_teardown_failures_by_name() -> None:
    from asyncdag._engine import ResourceManager

    log: list[str] = []

    @resource
    async def bad() -> AsyncIterator[str]:
        raise ConnectionError("refused")
        yield "never"  # pragma: no cover

    @resource
    async def fragile() -> AsyncIterator[str]:
        yield "fragile"
        raise OSError("gone")

    events, emit = recorder()
    definitions = {"bad": bad, "fragile": fragile, "a": tracked("a", log)}
    manager = ResourceManager(definitions, {}, run_id="r", emit=emit)
    async with manager.hosted():
        await manager.ensure({"a", "fragile"})
        with pytest.raises(ResourceInitError, match=r"'bad'.*refused"):
            await manager.ensure({"bad"})
    assert log == ["up a", "down a"]
    assert (EventType.RESOURCE_INIT_FAILURE, "bad") in events
    assert (EventType.RESOURCE_TEARDOWN_FAILURE, "fragile") in events


async def test_a_hosted_manager_tears_down_in_order_when_cancelled_from_outside() -> None:
    from asyncdag._engine import ResourceManager

    log: list[str] = []
    _, emit = recorder()
    manager = ResourceManager(
        {"heart": heartbeat(log), "a": tracked("a", log)}, {}, run_id="r", emit=emit
    )
    with anyio.CancelScope() as outer:
        async with manager.hosted():
            await manager.ensure({"a"})
            await manager.ensure({"heart"})
            outer.cancel()
            await anyio.sleep_forever()
    assert outer.cancelled_caught
    assert log == ["up a", "up heart", "down heart", "down a"]


async def test_a_resource_holding_a_task_group_works_in_a_pipeline() -> None:
    log: list[str] = []

    @solid(required_resources={"heart"})
    async def use(context: Any) -> str:
        return context.resources.heart

    @pipeline(resources={"heart": heartbeat(log)})
    def p() -> None:
        use()

    result = await execute_pipeline_async(p)
    assert result.output_for_solid("use") == "beat"
    assert log == ["up heart", "down heart"]


async def test_a_hosted_sync_setup_finishing_after_its_step_was_cancelled_is_undone() -> None:
    from asyncdag._engine import ResourceManager

    log: list[str] = []
    entered = anyio.Event()
    release = threading.Event()

    @resource
    def slow_sync() -> Iterator[str]:
        anyio.from_thread.run_sync(entered.set)
        release.wait()
        log.append("up slow_sync")
        yield "slow_sync"
        log.append("down slow_sync")

    events, emit = recorder()
    manager = ResourceManager({"slow_sync": slow_sync}, {}, run_id="r", emit=emit)
    try:
        async with manager.hosted():
            with anyio.CancelScope() as step:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(manager.ensure, {"slow_sync"})
                    await entered.wait()
                    step.cancel()
                    release.set()
            assert step.cancelled_caught
            assert log == ["up slow_sync", "down slow_sync"]
    finally:
        release.set()
    assert "slow_sync" not in manager.values
    assert (EventType.RESOURCE_TEARDOWN, "slow_sync") in events
