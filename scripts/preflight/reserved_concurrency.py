"""E9104 - the functions' reserved concurrency fits the budget the deployer gives the stack.

What AWS does: reserved concurrency is taken from the account's concurrency quota per Region, and
Lambda keeps 100 of it unreserved: "You can reserve up to the Unreserved account concurrency value
minus 100" (Lambda Developer Guide, "Configuring reserved concurrency"). The default quota is 1,000,
and "New AWS accounts have reduced concurrency and memory quotas" (Lambda Developer Guide, "Lambda
quotas"), which can leave nothing to reserve at all. A function whose ReservedConcurrentExecutions
does not fit makes CreateFunction/PutFunctionConcurrency fail ("Specified ReservedConcurrentExecutions
for function decreases account's UnreservedConcurrentExecution below its minimum value") and the
stack rolls back. Two installations of this stack in one account take from the same quota.

What the rule checks:
- Every reservation (Globals apply to every AWS::Serverless::Function, so the transformed
  AWS::Lambda::Function carries it) is a number, a Ref to a Number parameter with a MaxValue, or an
  `Fn::If` of those and AWS::NoValue.
- A template that reserves anything declares the budget parameter (`ReservedConcurrencyBudget`,
  Number, Default 0) and the sum of reservations stays within it: with the budget at its default,
  and at its smallest and largest non-default value (conditions on the budget are evaluated; other
  conditions count their larger branch, a function's own Condition counts as true).
- The budgets that the config envs of samconfig.toml give the stack, summed per Region (two
  installations may share an account), leave the 100 unreserved executions of an account with the
  default quota of 1,000 (rule option `account_concurrency`, e.g. `-x E9104:account_concurrency=10`
  for a new account).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, ClassVar

from cfnlint.rules import CloudFormationLintRule, RuleMatch

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _preflight as pf

BUDGET = "ReservedConcurrencyBudget"
UNRESERVED_MINIMUM = 100
DEFAULT_ACCOUNT_CONCURRENCY = 1000
LARGE = 10**6  # stands for "no MaxValue" when the budget parameter has none


class Unbounded(ValueError):
    """A reservation whose largest value the template does not bound."""


class Conditions:
    """Evaluates the template's Conditions for one value of the budget; None = depends on other parameters."""

    def __init__(self, template: dict[str, Any], budget: int) -> None:
        self.definitions = template.get("Conditions", {}) or {}
        self.budget = budget
        self.cache: dict[str, bool | None] = {}

    def named(self, name: str) -> bool | None:
        if name not in self.cache:
            self.cache[name] = None  # guards against a cycle
            self.cache[name] = self.evaluate(self.definitions.get(name))
        return self.cache[name]

    def value(self, item: Any) -> str | None:
        key, argument = pf.intrinsic(item)
        if key is None:
            return str(item)
        if key == "Ref" and argument == BUDGET:
            return str(self.budget)
        return None

    def evaluate(self, expression: Any) -> bool | None:
        key, argument = pf.intrinsic(expression)
        result: bool | None = None
        if key == "Condition":
            result = self.named(str(argument))
        elif key == "Fn::Equals":
            left, right = (self.value(item) for item in argument)
            result = None if left is None or right is None else left == right
        elif key == "Fn::Not":
            inner = self.evaluate(argument[0])
            result = None if inner is None else not inner
        elif key == "Fn::And":
            parts = [self.evaluate(item) for item in argument]
            result = False if False in parts else (None if None in parts else True)
        elif key == "Fn::Or":
            parts = [self.evaluate(item) for item in argument]
            result = True if True in parts else (None if None in parts else False)
        return result


def number_parameter_max(template: dict[str, Any], name: str) -> int:
    spec = template.get("Parameters", {}).get(name)
    if spec is None or spec.get("Type") != "Number" or "MaxValue" not in spec:
        raise Unbounded(f"parameter {name} is not a Number with a MaxValue")
    return int(spec["MaxValue"])


def reservation(template: dict[str, Any], value: Any, conditions: Conditions) -> int:
    """Largest reservation a ReservedConcurrentExecutions value can take for this budget value."""
    key, argument = pf.intrinsic(value)
    if key is None:
        return int(value)
    if key == "Ref":
        if argument == "AWS::NoValue":
            return 0
        if argument == BUDGET:
            return conditions.budget
        return number_parameter_max(template, str(argument))
    if key == "Fn::If":
        holds = conditions.named(str(argument[0]))
        if holds is None:
            return max(reservation(template, argument[1], conditions), reservation(template, argument[2], conditions))
        return reservation(template, argument[1] if holds else argument[2], conditions)
    raise Unbounded(f"{key} is not a number the rule can bound")


def budget_values(spec: dict[str, Any]) -> list[int]:
    default = int(spec.get("Default", 0))
    low = max(int(spec.get("MinValue", 0)), 1 if default == 0 else 0)
    high = int(spec.get("MaxValue", LARGE))
    return sorted({default, low, high})


class ReservedConcurrencyWithinBudget(CloudFormationLintRule):
    id = "E9104"
    shortdesc = "Reserved concurrency stays within the ReservedConcurrencyBudget parameter"
    description = (
        "The sum of the functions' ReservedConcurrentExecutions stays within the stack's concurrency budget "
        "parameter (default 0: reserve nothing), and the budgets of the samconfig.toml installations in one "
        "Region leave Lambda's 100 unreserved executions."
    )
    source_url = "https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html"
    tags: ClassVar[list[str]] = ["preflight", "lambda"]

    def __init__(self) -> None:
        super().__init__()
        self.config_definition = {"account_concurrency": {"default": DEFAULT_ACCOUNT_CONCURRENCY, "type": "integer"}}
        self.configure()

    def match(self, cfn: Any) -> list[RuleMatch]:
        template = cfn.template
        functions = {k: r for k, r in template.get("Resources", {}).items()
                     if r.get("Type") == "AWS::Lambda::Function"
                     and (r.get("Properties") or {}).get("ReservedConcurrentExecutions") is not None}
        matches: list[RuleMatch] = []
        spec = template.get("Parameters", {}).get(BUDGET)
        if functions and spec is None:
            names = ", ".join(sorted(functions))
            return [RuleMatch(["Parameters"], (
                f"{names} reserve concurrency but the template has no {BUDGET} parameter: declare it (Number, "
                "Default 0) and make every reservation fit it, so a deploy to an account with a small quota "
                "reserves nothing"
            ))]
        if spec is not None:
            if str(spec.get("Default")) != "0" or spec.get("Type") != "Number":
                return [RuleMatch(["Parameters", BUDGET], (
                    f"{BUDGET} must be a Number with Default 0, so that a deploy that does not set it reserves nothing"
                ))]
            matches.extend(self._within_budget(template, functions, spec))
        matches.extend(self._installations(cfn))
        return matches

    def _within_budget(self, template: dict[str, Any], functions: dict[str, Any], spec: dict[str, Any]) -> list[RuleMatch]:
        matches: list[RuleMatch] = []
        for budget in budget_values(spec):
            conditions = Conditions(template, budget)
            total = 0
            parts = []
            for logical_id, resource in sorted(functions.items()):
                if resource.get("Condition") and conditions.named(resource["Condition"]) is False:
                    continue
                value = resource["Properties"]["ReservedConcurrentExecutions"]
                try:
                    amount = reservation(template, value, conditions)
                except (Unbounded, ValueError, TypeError) as error:
                    return [RuleMatch(["Resources", logical_id, "Properties", "ReservedConcurrentExecutions"],
                                      f"{logical_id} reserves concurrency the rule cannot bound: {error}")]
                if amount:
                    total += amount
                    parts.append(f"{logical_id} {amount}")
            if total > budget:
                matches.append(RuleMatch(["Parameters", BUDGET], (
                    f"with {BUDGET}={budget} the functions reserve {total} concurrent executions ({', '.join(parts)}), "
                    f"more than the budget: Lambda refuses reservations that leave the account fewer than "
                    f"{UNRESERVED_MINIMUM} unreserved executions"
                )))
        return matches

    def _installations(self, cfn: Any) -> list[RuleMatch]:
        path = pf.samconfig_path(cfn.filename)
        if path is None:
            return []
        limit = int(self.config.get("account_concurrency", DEFAULT_ACCOUNT_CONCURRENCY)) - UNRESERVED_MINIMUM
        per_region: dict[str | None, list[tuple[str, int]]] = {}
        for env in pf.config_envs(path):
            if env.has_deploy:
                setting = env.overrides.get(BUDGET, "0") or "0"
                if not setting.isdigit():
                    return [RuleMatch(["Parameters"], f"{path.name} [{env.name}]: {BUDGET}={setting} is not a whole number")]
                per_region.setdefault(env.region, []).append((env.name, int(setting)))
        matches = []
        for region, budgets in sorted(per_region.items(), key=lambda item: str(item[0])):
            total = sum(budget for _, budget in budgets)
            if total > max(limit, 0):
                listing = ", ".join(f"{name}={budget}" for name, budget in budgets)
                matches.append(RuleMatch(["Parameters"], (
                    f"{path.name}: the installations in {region or 'the default Region'} reserve {total} concurrent "
                    f"executions together ({BUDGET}: {listing}); an account with a concurrency quota of "
                    f"{limit + UNRESERVED_MINIMUM} can reserve at most {max(limit, 0)}"
                )))
        return matches
