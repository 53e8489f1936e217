"""_workspace.describe_node: what the CLI and the UI show of one node."""

from __future__ import annotations

from asyncdag import RetryPolicy, pipeline, solid
from asyncdag._workspace import describe_node


@solid(tags={"team": "data"})
def fetch() -> int:
    return 1


def test_a_node_shows_its_calls_tags_and_the_retry_policy_that_applies() -> None:
    @pipeline(solid_retry_policy=RetryPolicy(max_retries=4))
    def p():
        fetch.tag({"tier": "gold"}).with_retry_policy(RetryPolicy(max_retries=2))()
        fetch()

    tagged, plain = (describe_node(p.nodes[name]) for name in ("fetch", "fetch_2"))
    assert tagged["tags"] == {"team": "data", "tier": "gold"}
    assert tagged["retry_policy"]["max_retries"] == 2
    assert plain["tags"] == {"team": "data"}
    assert plain["retry_policy"]["max_retries"] == 4  # the pipeline's default
