"""``DaskExecutor``: a plain object until a run opens it, so a mistake shows at once."""

from __future__ import annotations

import subprocess
import sys

import pytest

from asyncdag import DaskExecutor, DefinitionError


def test_it_takes_an_address_a_cluster_or_nothing() -> None:
    class Cluster:
        scheduler_address = "tcp://c:1"

    assert DaskExecutor(address="tcp://s:8786").address == "tcp://s:8786"
    assert DaskExecutor(cluster=Cluster()).cluster is not None
    own = DaskExecutor()
    assert own.address is None and own.cluster is None and own.cluster_options == {}
    assert repr(DaskExecutor(address="tcp://s:8786")) == "DaskExecutor(address='tcp://s:8786')"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"address": "tcp://a:1", "cluster": object()}, "not both"),
        ({"address": ""}, "must be a scheduler address"),
        ({"cluster": object()}, "has no scheduler_address"),
        ({"address": "tcp://a:1", "cluster_options": {"n_workers": 2}}, "leave it out"),
        ({"bridge": "socket"}, "bridge=...) must be one of"),
        ({"watchdog_timeout": 0}, "watchdog_timeout=...) must be > 0"),
        ({"teardown_grace": -1}, "teardown_grace=...) must be >= 0"),
    ],
)
def test_a_mistake_is_one_clear_error(options: dict, message: str) -> None:
    with pytest.raises(DefinitionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        DaskExecutor(**options)


def test_from_config_reads_the_validated_execution_dask_section() -> None:
    existing = DaskExecutor.from_config({"cluster": {"existing": {"address": "tcp://s:1"}}})
    assert existing.address == "tcp://s:1"
    local = DaskExecutor.from_config(
        {"cluster": {"local": {"n_workers": 2, "threads_per_worker": None, "resources": {}}}}
    )
    assert local.address is None and local.cluster_options == {"n_workers": 2}


def test_importing_asyncdag_and_making_an_executor_imports_no_dask() -> None:
    code = (
        "import sys, asyncdag, asyncdag.dask; asyncdag.DaskExecutor(address='tcp://s:1'); "
        "print(sorted(m for m in ('dask', 'distributed', 'cloudpickle') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.anyio
async def test_without_distributed_installed_the_run_fails_saying_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from asyncdag import RunStatus, execute_pipeline_async, pipeline, solid
    from asyncdag.dask import DaskUnavailable

    monkeypatch.setitem(sys.modules, "distributed", None)  # "import distributed" fails

    @solid
    def one() -> int:
        return 1

    @pipeline
    def p() -> None:
        one()

    result = await execute_pipeline_async(p, executor=DaskExecutor(), raise_on_error=False)
    assert result.status is RunStatus.FAILURE
    assert isinstance(result.run_exception, DaskUnavailable)
    assert "pip install 'asyncdag[dask]'" in str(result.run_exception)
