"""E9103 - AWS services that publish to a topic of the stack can use the topic's KMS key.

What AWS does: an encrypted SNS topic takes a message only from a publisher that can call
kms:GenerateDataKey* and kms:Decrypt on the topic's key. AWS services publish as their service
principal, and the SNS Developer Guide ("Enable compatibility between event sources from AWS
services and encrypted topics") says the key policy must allow that principal both actions, and
that this is not possible with the AWS managed key for SNS (`alias/aws/sns`), whose policy AWS owns.
A CloudWatch alarm whose action is such a topic still changes state, but the notification is not
delivered; nothing fails at deploy time. The same holds for EventBridge rules targeting a topic
(`events.amazonaws.com`; AWS's knowledge center article "Why isn't my Amazon SNS topic receiving
EventBridge notifications?" asks for a customer managed key whose policy grants EventBridge).

What the rule checks: for every topic named in a CloudWatch alarm's AlarmActions, OKActions or
InsufficientDataActions (publisher `cloudwatch.amazonaws.com`) and every topic an EventBridge rule
targets (`events.amazonaws.com`): the topic is not encrypted with `alias/aws/sns`, and if its
KmsMasterKeyId is a key of this template, that key's policy allows the service principal
kms:Decrypt and kms:GenerateDataKey*.
A topic without encryption, or under a key from outside the template, is not checked here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, ClassVar

from cfnlint.rules import CloudFormationLintRule, RuleMatch

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _preflight as pf

ALARM_ACTIONS = ("AlarmActions", "OKActions", "InsufficientDataActions")
PUBLISH_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey*")
AWS_MANAGED_SNS_KEY = "alias/aws/sns"


def publishers(template: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """topic logical id -> [(service principal, publishing resource)]."""
    resources = template.get("Resources", {})
    topics = {k for k, r in resources.items() if r.get("Type") == "AWS::SNS::Topic"}
    found: dict[str, list[tuple[str, str]]] = {}
    for logical_id, resource in resources.items():
        props = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::CloudWatch::Alarm":
            named = pf.references([props.get(name) for name in ALARM_ACTIONS])
            for topic in sorted(named & topics):
                found.setdefault(topic, []).append(("cloudwatch.amazonaws.com", logical_id))
        elif resource.get("Type") == "AWS::Events::Rule":
            named = pf.references([target.get("Arn") for target in pf.as_list(props.get("Targets")) if isinstance(target, dict)])
            for topic in sorted(named & topics):
                found.setdefault(topic, []).append(("events.amazonaws.com", logical_id))
    return found


def key_allows(policy: Any, service: str) -> bool:
    return any(pf.allows_service(statement, service)
               and all(pf.covers(pf.actions(statement), action.rstrip("*")) for action in PUBLISH_ACTIONS)
               for statement in pf.statements(policy))


class ServicePublishersCanUseTopicKey(CloudFormationLintRule):
    id = "E9103"
    shortdesc = "Topics that AWS services publish to are encrypted with a key those services may use"
    description = (
        "An SNS topic named in an alarm action or targeted by an EventBridge rule must not be encrypted with "
        "alias/aws/sns, and its customer managed key must allow the publishing service principal kms:Decrypt "
        "and kms:GenerateDataKey*; otherwise the notifications are silently dropped."
    )
    source_url = "https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services"
    tags: ClassVar[list[str]] = ["preflight", "sns", "kms", "cloudwatch"]

    def match(self, cfn: Any) -> list[RuleMatch]:
        resources = cfn.template.get("Resources", {})
        matches = []
        for topic, senders in sorted(publishers(cfn.template).items()):
            key_value = (resources[topic].get("Properties") or {}).get("KmsMasterKeyId")
            if key_value is None:
                continue
            path = ["Resources", topic, "Properties", "KmsMasterKeyId"]
            by = ", ".join(sorted({sender for _, sender in senders}))
            if any(AWS_MANAGED_SNS_KEY in text for text in pf.alternatives(key_value)):
                matches.append(RuleMatch(path, (
                    f"{topic} is encrypted with {AWS_MANAGED_SNS_KEY}, which {by} cannot use: AWS services cannot "
                    "publish to a topic under the AWS managed SNS key, so the notifications are dropped; use a "
                    "customer managed key whose policy allows the publishing service"
                )))
                continue
            keys = [k for k in pf.references(key_value) if resources.get(k, {}).get("Type") == "AWS::KMS::Key"]
            for key in keys:
                policy = (resources[key].get("Properties") or {}).get("KeyPolicy")
                for service in sorted({service for service, _ in senders}):
                    if key_allows(policy, service):
                        continue
                    matches.append(RuleMatch(["Resources", key, "Properties", "KeyPolicy"], (
                        f"{topic} is encrypted with {key}, whose key policy does not allow {service} "
                        f"{' and '.join(PUBLISH_ACTIONS)}: the messages of {by} are dropped"
                    )))
        return matches
