"""The `astats-operators` policy pack: `pulumi preview --policy-pack policy`.

The rules live in `astats_rules.py` as plain functions; this file only hands them to the policy
engine, each as a mandatory resource policy. A stack may lower one rule to advisory with
`--policy-pack-config policy/config/<stack>.json` (see docs/review-and-policy.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# The policy host runs this file as a script from its own directory.
import astats_rules
from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

PACK_NAME = "astats-operators"


def plain(value: Any) -> Any:
    """Copy the engine's inputs out of pulumi-policy's proxies, marking values unknown in a
    preview as `UNKNOWN` instead of raising, so one computed value cannot silence a rule."""
    if isinstance(value, Mapping):
        copied: dict[str, Any] = {}
        for key in value:
            try:
                copied[key] = plain(value[key])
            except UnknownValueError:
                copied[key] = astats_rules.UNKNOWN
        return copied
    if isinstance(value, Sequence) and not isinstance(value, str):
        items: list[Any] = []
        for index in range(len(value)):
            try:
                items.append(plain(value[index]))
            except UnknownValueError:
                items.append(astats_rules.UNKNOWN)
        return items
    return value


def as_policy(rule: astats_rules.Rule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type != rule.resource_type:
            return
        opts = astats_rules.Options(
            protect=bool(args.opts.protect),
            delete_before_replace=args.opts.delete_before_replace,
        )
        for message in rule.check(plain(args.props), opts):
            report_violation(message, None)

    return ResourceValidationPolicy(
        name=rule.name,
        description=rule.description,
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


def as_stack_policy(rule: astats_rules.StackRule) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [
            astats_rules.Resource(
                type=r.resource_type,
                urn=r.urn,
                name=r.name,
                props=plain(r.props),
                dependencies=tuple(d.urn for d in r.dependencies),
            )
            for r in args.resources
        ]
        for urn, message in rule.check(resources):
            report_violation(message, urn)

    return StackValidationPolicy(
        name=rule.name,
        description=rule.description,
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


POLICIES: list[ResourceValidationPolicy | StackValidationPolicy] = [
    *(as_policy(rule) for rule in astats_rules.RULES),
    *(as_stack_policy(rule) for rule in astats_rules.STACK_RULES),
]

if __name__ == "__main__":
    PolicyPack(
        name=PACK_NAME, policies=list(POLICIES), enforcement_level=EnforcementLevel.MANDATORY
    )
