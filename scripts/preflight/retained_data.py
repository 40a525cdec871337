"""E9106 - resources that hold data survive a stack deletion and a replacement.

What AWS does: "With the DeletionPolicy attribute you can preserve, and in some cases, backup a
resource when its stack is deleted ... By default, CloudFormation deletes the resource and all its
content if a resource has no DeletionPolicy attribute in a template" (CloudFormation User Guide,
"DeletionPolicy attribute"). The same holds for the old physical resource when an update replaces
it, unless `UpdateReplacePolicy` says otherwise ("UpdateReplacePolicy attribute"). A deleted
secret's value, whatever a deleted key encrypted (once KMS deletes a key, data encrypted under it
can no longer be decrypted), the release ledger, the dead-letter queue's undelivered
pushes and the log of every release would go with a mistaken `sam delete` or a replacing change.

What the rule checks: every resource of a data-bearing type carries `DeletionPolicy: Retain` (or
`RetainExceptOnCreate`, which only lets a failed first create clean up after itself, or
`Snapshot` where the type supports it) and `UpdateReplacePolicy: Retain` (or `Snapshot` where
supported). The data-bearing types are the table below.
"""

from __future__ import annotations

from typing import Any, ClassVar

from cfnlint.rules import CloudFormationLintRule, RuleMatch

# type -> what would be lost.
DATA_BEARING = {
    "AWS::DynamoDB::Table": "its items",
    "AWS::SecretsManager::Secret": "the secret value",
    "AWS::KMS::Key": "everything encrypted under the key",
    "AWS::Logs::LogGroup": "its log events",
    "AWS::SQS::Queue": "the messages waiting in it",
    "AWS::ECR::Repository": "its images",
    "AWS::S3::Bucket": "its objects",
}
# Types whose DeletionPolicy/UpdateReplacePolicy may be Snapshot (CloudFormation User Guide,
# "DeletionPolicy attribute", Snapshot); none of the data-bearing types above is among them.
SNAPSHOT_TYPES = {
    "AWS::EC2::Volume", "AWS::ElastiCache::CacheCluster", "AWS::ElastiCache::ReplicationGroup",
    "AWS::Neptune::DBCluster", "AWS::RDS::DBCluster", "AWS::RDS::DBInstance", "AWS::Redshift::Cluster",
    "AWS::DocDB::DBCluster",
}
DELETION_OK = {"Retain", "RetainExceptOnCreate"}
REPLACE_OK = {"Retain"}


class DataBearingResourcesRetained(CloudFormationLintRule):
    id = "E9106"
    shortdesc = "Data-bearing resources are retained on deletion and replacement"
    description = (
        "DynamoDB tables, Secrets Manager secrets, KMS keys, log groups, SQS queues, ECR repositories and S3 "
        "buckets carry DeletionPolicy Retain and UpdateReplacePolicy Retain (or Snapshot where supported)."
    )
    source_url = "https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-deletionpolicy.html"
    tags: ClassVar[list[str]] = ["preflight", "data"]

    def match(self, cfn: Any) -> list[RuleMatch]:
        matches = []
        for logical_id, resource in sorted(cfn.template.get("Resources", {}).items()):
            kind = resource.get("Type")
            if kind not in DATA_BEARING:
                continue
            snapshot = {"Snapshot"} if kind in SNAPSHOT_TYPES else set()
            for attribute, allowed in (("DeletionPolicy", DELETION_OK), ("UpdateReplacePolicy", REPLACE_OK)):
                value = resource.get(attribute)
                if value in allowed | snapshot:
                    continue
                event = "deleting the stack" if attribute == "DeletionPolicy" else "a replacing update"
                matches.append(RuleMatch(["Resources", logical_id], (
                    f"{logical_id} ({kind}) has {attribute} {value or 'unset (Delete)'}: {event} would destroy "
                    f"{DATA_BEARING[kind]}; set {attribute}: Retain"
                )))
        return matches
