"""E9102 - a KMS key that stack resources are encrypted with lets the account's IAM policies use it.

What AWS does: a service that encrypts with a customer managed key on a caller's behalf uses the
caller's credentials for the KMS calls. Secrets Manager, for one, needs kms:GenerateDataKey and
kms:Decrypt on the key from whoever calls CreateSecret or PutSecretValue with a KmsKeyId (Secrets
Manager User Guide, "Secret encryption and decryption": "Permissions for the KMS key"); SNS needs
kms:GenerateDataKey* and kms:Decrypt from every publisher of an encrypted topic (SNS Developer
Guide, "Data encryption"/key management). When the stack is deployed, that caller is the
deploying principal or the CloudFormation service role. KMS lets an IAM policy grant a key only
when the key policy allows it: "Unless the key policy explicitly allows it, you cannot use IAM
policies to allow access to a KMS key" (KMS Developer Guide, "Key policies": the default key
policy's statement for the account principal `arn:aws:iam::<account>:root`). A key policy that
names only a few workload roles therefore makes CloudFormation's CreateSecret fail with a KMS
AccessDenied, and the stack rolls back.

What the rule checks: every AWS::KMS::Key of the template that another resource names in a KMS
property (KmsKeyId, KmsMasterKeyId, KMSMasterKeyId, KmsKeyArn, ...) has a key policy statement
that allows the account root (`arn:${AWS::Partition}:iam::${AWS::AccountId}:root`) kms:Decrypt
and kms:GenerateDataKey (`kms:*` and `kms:GenerateDataKey*` cover them) with no condition that
restricts the principal (aws:PrincipalArn, aws:userid, ...). A kms:ViaService condition is fine
when it names the service of the resource that uses the key.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, ClassVar

from cfnlint.rules import CloudFormationLintRule, RuleMatch

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _preflight as pf

USE_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")
# Condition keys that narrow who may use the key; with one of them IAM policies can no longer grant it.
PRINCIPAL_KEYS = {
    "aws:principalarn", "aws:userid", "aws:username", "aws:principaltag", "aws:principaltype",
    "aws:principalisawsservice", "aws:principalservicename", "aws:sourceidentity",
}
KMS_PROPERTY = re.compile(r"^kms.*key", re.IGNORECASE)
# The service a resource type's KMS calls come through (for kms:ViaService).
VIA_SERVICE = {
    "AWS::SecretsManager::Secret": "secretsmanager",
    "AWS::SNS::Topic": "sns",
    "AWS::SQS::Queue": "sqs",
    "AWS::Logs::LogGroup": "logs",
    "AWS::DynamoDB::Table": "dynamodb",
    "AWS::Lambda::Function": "lambda",
    "AWS::StepFunctions::StateMachine": "states",
}


def kms_users(template: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """key logical id -> [(resource, resource type)] that name it in a KMS property."""
    resources = template.get("Resources", {})
    keys = {k for k, r in resources.items() if r.get("Type") == "AWS::KMS::Key"}
    users: dict[str, list[tuple[str, str]]] = {}

    def walk(value: Any, owner: str, kind: str) -> None:
        if isinstance(value, dict):
            for name, item in value.items():
                if KMS_PROPERTY.match(str(name)):
                    for key in pf.references(item) & keys:
                        users.setdefault(key, []).append((owner, kind))
                walk(item, owner, kind)
        elif isinstance(value, list):
            for item in value:
                walk(item, owner, kind)

    for logical_id, resource in resources.items():
        if resource.get("Type", "").startswith("AWS::IAM::"):
            continue  # a grant naming the key is not a use of it by CloudFormation
        walk(resource.get("Properties") or {}, logical_id, resource.get("Type", ""))
    return users


def delegates(statement: dict[str, Any], services: set[str]) -> bool:
    if not pf.allows_account_root(statement):
        return False
    if not all(pf.covers(pf.actions(statement), action) for action in USE_ACTIONS):
        return False
    keys = pf.condition_keys(statement)
    if any(k in PRINCIPAL_KEYS or k.startswith("aws:principaltag/") for k in keys):
        return False
    via = pf.condition_values(statement, "kms:ViaService")
    return not via or all(any(v.startswith(f"{service}.") for v in via) for service in services)


class KmsKeyDelegatesToIam(CloudFormationLintRule):
    id = "E9102"
    shortdesc = "KMS keys used by stack resources let the account's IAM policies use them"
    description = (
        "A customer managed key that a stack resource is encrypted with must let the account (root) principal "
        "use it without a principal-restricting condition, so that IAM policies (of the deployer, the "
        "CloudFormation role, the publishers) can grant kms:GenerateDataKey and kms:Decrypt."
    )
    source_url = "https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html"
    tags: ClassVar[list[str]] = ["preflight", "kms"]

    def match(self, cfn: Any) -> list[RuleMatch]:
        resources = cfn.template.get("Resources", {})
        matches = []
        for key, users in sorted(kms_users(cfn.template).items()):
            services = {VIA_SERVICE[kind] for _, kind in users if kind in VIA_SERVICE}
            policy = (resources[key].get("Properties") or {}).get("KeyPolicy")
            if any(delegates(statement, services) for statement in pf.statements(policy)):
                continue
            names = ", ".join(sorted({owner for owner, _ in users}))
            matches.append(RuleMatch(
                ["Resources", key, "Properties", "KeyPolicy"],
                f"{key} encrypts {names} but its key policy does not let the account root use it "
                f"({' and '.join(USE_ACTIONS)} without a principal-restricting condition): CloudFormation and "
                "the other callers cannot be granted the key through IAM and the create fails with AccessDenied",
            ))
        return matches
