"""Branching with optional outputs: each order takes one path, the other is skipped.

``route`` declares two optional outputs and produces only one of them; the
solids on the branch it did not produce are skipped (STEP_SKIPPED, with the
reason naming the missing output), and the run still succeeds.

    python examples/branching.py [--amount 250]
"""

from __future__ import annotations

import argparse

from asyncdag import Out, Output, execute_pipeline, pipeline, solid


@solid(config_schema={"amount": int})
def order(context) -> int:
    return context.solid_config["amount"]


@solid(outs={"small": Out(is_required=False), "large": Out(is_required=False)})
def route(amount: int):
    if amount < 100:
        yield Output(amount, "small")
    else:
        yield Output(amount, "large")


@solid
def auto_approve(context, amount: int) -> str:
    context.log.info(f"approved {amount} automatically")
    return "approved"


@solid
def manual_review(context, amount: int) -> str:
    context.log.info(f"{amount} sent for review")
    return "in review"


# A default run config, so `asyncdag pipeline execute -f examples/branching.py` runs as is;
# `-c` or the UI's playground override it key by key.
@pipeline(config={"solids": {"order": {"config": {"amount": 250}}}})
def branching():
    small, large = route(order())
    auto_approve(small)
    manual_review(large)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amount", type=int, default=250)
    args = parser.parse_args()
    result = execute_pipeline(branching, {"solids": {"order": {"config": {"amount": args.amount}}}})
    for key, step in result.step_results.items():
        print(f"{key:15} {step.status.value:8} {step.skip_reason or ''}")


if __name__ == "__main__":
    main()
