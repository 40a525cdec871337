"""Create the real `template.yaml` in moto, resource by resource, through the AWS APIs.

moto's CloudFormation silently skips resource types it does not know (CodeDeploy, Secrets
Manager, Function URLs), so the local stack is created resource by resource through the same AWS
APIs CloudFormation would call, in dependency order. The state machine's definition is the shipped
`statemachines/release.asl.json` with its `DefinitionSubstitutions` filled in; nothing is a copy.
Reading and evaluating the template (intrinsics, Conditions, Rules, order) is `local.template`'s part.
"""

from __future__ import annotations

import json
import re
import zipfile
from io import BytesIO
from pathlib import Path
from typing import Any

from local.stack import LocalFunction, Stack
from local.template import Resolver, built_template, creation_order, function_environment, translate


def create_table(ddb: Any, props: dict[str, Any]) -> None:
    """Create an `AWS::DynamoDB::Table` from its (resolved) template properties: keys, attributes,
    global secondary indexes, billing and TTL. The tests' ledger table is made by this too."""
    ddb.create_table(
        TableName=props["TableName"],
        AttributeDefinitions=props["AttributeDefinitions"],
        KeySchema=props["KeySchema"],
        BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
        **({"GlobalSecondaryIndexes": props["GlobalSecondaryIndexes"]} if props.get("GlobalSecondaryIndexes") else {}),
    )
    ttl = props.get("TimeToLiveSpecification")
    if ttl:
        ddb.update_time_to_live(TableName=props["TableName"], TimeToLiveSpecification=ttl)


def zip_placeholder() -> bytes:
    """moto stores a zip for every function; the local runtime runs the real code dir instead."""
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "run in process by local.emulation from the project's functions/ folder\n")
    return buffer.getvalue()


class Provisioner:
    """Creates each translated resource through the AWS API (here: moto's server)."""

    def __init__(self, session: Any, stack: Stack, translated: dict[str, Any], local_paths: dict[str, str], source: dict[str, Any]) -> None:
        self.session = session
        self.stack = stack
        self.translated = translated
        self.local_paths = local_paths
        self.source = source
        self.resolver = Resolver(stack)
        self.clients: dict[str, Any] = {}
        self.layer_dirs: dict[str, Path] = {}  # layer version ARN -> its folder in the build

    def client(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = self.session.client(service, region_name=self.stack.region)
        return self.clients[service]

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.stack.region}:{self.stack.account}:{resource}"

    def create_all(self) -> Stack:
        # Resources and outputs whose Condition is false do not exist (as in CloudFormation): the
        # GitHub OIDC roles, for example, are only created when GitHubOrg/GitHubRepo are set.
        self.resolver.check_rules(self.translated.get("Rules", {}))
        conditions = self.resolver.evaluate_conditions(self.translated.get("Conditions", {}))
        resources = {lid: r for lid, r in self.translated["Resources"].items() if conditions.get(r.get("Condition", ""), True)}
        for logical_id in creation_order(resources):
            resource = resources[logical_id]
            kind = resource["Type"].replace("::", "_").replace("AWS_", "", 1)
            creator = getattr(self, f"create_{kind}", None)
            if creator is None:
                raise NotImplementedError(f"the local runtime cannot create {resource['Type']} ({logical_id})")
            props = self.resolver.resolve(resource.get("Properties", {}))
            creator(logical_id, props)
        for name, output in self.translated.get("Outputs", {}).items():
            if not conditions.get(output.get("Condition", ""), True):
                continue
            self.stack.outputs[name] = str(self.resolver.resolve(output["Value"]))
        return self.stack

    def _set(self, logical_id: str, physical: str, **attributes: str) -> None:
        self.stack.physical[logical_id] = physical
        self.stack.attributes[logical_id] = attributes

    # --- IAM ----------------------------------------------------------------------------------------
    def create_IAM_Role(self, logical_id: str, props: dict[str, Any]) -> None:
        name = props.get("RoleName") or f"{self.stack.name}-{logical_id}"[:64]
        iam = self.client("iam")
        boundary = {"PermissionsBoundary": props["PermissionsBoundary"]} if props.get("PermissionsBoundary") else {}
        role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]),
                               **boundary)["Role"]
        for policy in props.get("Policies", []):
            # IAM accepts a document without Version (SAM policy templates omit it); moto does not.
            document = {"Version": "2012-10-17", **policy["PolicyDocument"]}
            iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(document))
        # AWS managed policies (arn:aws:iam::aws:policy/...) are not loaded in moto; IAM is not
        # enforced locally either, so only the role's own statements are recorded.
        self._set(logical_id, name, Arn=role["Arn"], RoleId=role["RoleId"])

    def create_IAM_ManagedPolicy(self, logical_id: str, props: dict[str, Any]) -> None:
        # The stack's permissions boundary (RoleBoundary); IAM is not enforced locally, the policy is recorded.
        name = props.get("ManagedPolicyName") or f"{self.stack.name}-{logical_id}"[:128]
        document = {"Version": "2012-10-17", **props["PolicyDocument"]}
        policy = self.client("iam").create_policy(PolicyName=name, Path=props.get("Path", "/"), PolicyDocument=json.dumps(document),
                                                  Description=props.get("Description", ""))["Policy"]
        self._set(logical_id, policy["Arn"], PolicyArn=policy["Arn"])

    # --- data -----------------------------------------------------------------------------------------
    def create_DynamoDB_Table(self, logical_id: str, props: dict[str, Any]) -> None:
        create_table(self.client("dynamodb"), props)
        self._set(logical_id, props["TableName"], Arn=self.arn("dynamodb", f"table/{props['TableName']}"))

    def create_SNS_Topic(self, logical_id: str, props: dict[str, Any]) -> None:
        attributes = {"KmsMasterKeyId": props["KmsMasterKeyId"]} if "KmsMasterKeyId" in props else {}
        arn = self.client("sns").create_topic(Name=props["TopicName"], Attributes=attributes)["TopicArn"]
        self._set(logical_id, arn, TopicName=props["TopicName"], TopicArn=arn)

    def create_SNS_Subscription(self, logical_id: str, props: dict[str, Any]) -> None:
        attributes = {}
        if "FilterPolicy" in props:
            attributes["FilterPolicy"] = json.dumps(props["FilterPolicy"])
            attributes["FilterPolicyScope"] = props.get("FilterPolicyScope", "MessageAttributes")
        arn = self.client("sns").subscribe(
            TopicArn=props["TopicArn"], Protocol=props["Protocol"], Endpoint=props["Endpoint"], Attributes=attributes
        )["SubscriptionArn"]
        self._set(logical_id, arn)

    def create_SecretsManager_Secret(self, logical_id: str, props: dict[str, Any]) -> None:
        sm = self.client("secretsmanager")
        generate = props.get("GenerateSecretString")
        if generate:
            password = sm.get_random_password(
                PasswordLength=generate.get("PasswordLength", 32), ExcludePunctuation=generate.get("ExcludePunctuation", False)
            )["RandomPassword"]
            value = json.loads(generate["SecretStringTemplate"]) | {generate["GenerateStringKey"]: password}
            secret_string = json.dumps(value)
        else:
            secret_string = props["SecretString"]
        kms = {"KmsKeyId": props["KmsKeyId"]} if props.get("KmsKeyId") else {}
        arn = sm.create_secret(Name=props["Name"], Description=props.get("Description", ""), SecretString=secret_string, **kms)["ARN"]
        self._set(logical_id, arn, Id=arn)

    def create_SSM_Parameter(self, logical_id: str, props: dict[str, Any]) -> None:
        self.client("ssm").put_parameter(Name=props["Name"], Value=props["Value"], Type=props.get("Type", "String"),
                                         Description=props.get("Description", ""), Overwrite=False)
        self._set(logical_id, props["Name"], Type=props.get("Type", "String"), Value=props["Value"])

    def create_KMS_Key(self, logical_id: str, props: dict[str, Any]) -> None:
        # Created with its key policy and rotation setting; KMS policies are not enforced locally.
        kms = self.client("kms")
        key = kms.create_key(Description=props.get("Description", ""), KeyUsage=props.get("KeyUsage", "ENCRYPT_DECRYPT"),
                             KeySpec=props.get("KeySpec", "SYMMETRIC_DEFAULT"), Policy=json.dumps(props["KeyPolicy"]))["KeyMetadata"]
        if props.get("EnableKeyRotation"):
            kms.enable_key_rotation(KeyId=key["KeyId"])
        self._set(logical_id, key["KeyId"], Arn=key["Arn"], KeyId=key["KeyId"])

    def create_SecretsManager_RotationSchedule(self, logical_id: str, props: dict[str, Any]) -> None:
        # As CloudFormation does with RotateImmediatelyOnUpdate false: the schedule and the function
        # are set, nothing is rotated now (see local.emulation.secrets_rotation).
        rules = {k: int(v) if k == "AutomaticallyAfterDays" else v for k, v in props.get("RotationRules", {}).items()}
        self.client("secretsmanager").rotate_secret(
            SecretId=props["SecretId"], RotationLambdaARN=props["RotationLambdaARN"], RotationRules=rules,
            RotateImmediately=bool(props.get("RotateImmediatelyOnUpdate", True)),
        )
        self._set(logical_id, f"{props['SecretId']}|rotation")

    def create_Logs_LogGroup(self, logical_id: str, props: dict[str, Any]) -> None:
        name = props["LogGroupName"]
        self.client("logs").create_log_group(logGroupName=name)
        self._set(logical_id, name, Arn=self.arn("logs", f"log-group:{name}:*"))

    def create_CloudWatch_Alarm(self, logical_id: str, props: dict[str, Any]) -> None:
        keys = ("AlarmName", "AlarmDescription", "Namespace", "MetricName", "Dimensions", "Statistic", "Period",
                "EvaluationPeriods", "Threshold", "ComparisonOperator", "TreatMissingData", "AlarmActions")
        self.client("cloudwatch").put_metric_alarm(**{k: props[k] for k in keys if k in props})
        self._set(logical_id, props["AlarmName"], Arn=self.arn("cloudwatch", f"alarm:{props['AlarmName']}"))

    def create_SQS_Queue(self, logical_id: str, props: dict[str, Any]) -> None:
        sqs = self.client("sqs")
        attributes = {k: str(props[k]).lower() if isinstance(props[k], bool) else str(props[k])
                      for k in ("MessageRetentionPeriod", "KmsMasterKeyId", "SqsManagedSseEnabled") if k in props}
        url = sqs.create_queue(QueueName=props["QueueName"], Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self._set(logical_id, url, Arn=arn, QueueName=props["QueueName"], QueueUrl=url)

    def create_SQS_QueuePolicy(self, logical_id: str, props: dict[str, Any]) -> None:
        for url in props["Queues"]:
            self.client("sqs").set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])})
        self._set(logical_id, f"{logical_id}-policy")

    def create_CloudWatch_Dashboard(self, logical_id: str, props: dict[str, Any]) -> None:
        json.loads(props["DashboardBody"])  # CloudFormation refuses a body that is not JSON
        self.client("cloudwatch").put_dashboard(DashboardName=props["DashboardName"], DashboardBody=props["DashboardBody"])
        self._set(logical_id, props["DashboardName"])

    # --- Lambda ---------------------------------------------------------------------------------------
    def create_Lambda_LayerVersion(self, logical_id: str, props: dict[str, Any]) -> None:
        layer = self.client("lambda").publish_layer_version(
            LayerName=props["LayerName"], Content={"ZipFile": zip_placeholder()}, CompatibleRuntimes=props.get("CompatibleRuntimes", [])
        )
        # The layer's content is its folder in the build (S3Key of the placeholder URI).
        self.layer_dirs[layer["LayerVersionArn"]] = Path("/" + props["Content"]["S3Key"])
        self._set(logical_id, layer["LayerVersionArn"])

    def _source_props(self, logical_id: str) -> dict[str, Any]:
        return dict(self.source["Resources"].get(logical_id, {}).get("Properties", {}))

    def create_Lambda_Function(self, logical_id: str, props: dict[str, Any]) -> None:
        lam = self.client("lambda")
        env = function_environment(logical_id, props)
        args: dict[str, Any] = {
            "FunctionName": props["FunctionName"],
            "Role": props["Role"],
            "Timeout": props.get("Timeout", 3),
            "MemorySize": props.get("MemorySize", 128),
            "Environment": {"Variables": env},
            "Architectures": props.get("Architectures", ["x86_64"]),
        }
        image_uri = None
        code_dir = None
        handler = None
        if props.get("PackageType") == "Image":
            image_uri = props["Code"]["ImageUri"]
            args |= {"PackageType": "Image", "Code": {"ImageUri": image_uri}}
        else:
            handler = props["Handler"]
            code_dir = Path(self.local_paths[logical_id])
            args |= {"Runtime": props["Runtime"], "Handler": handler, "Code": {"ZipFile": zip_placeholder()}}
        created = lam.create_function(**args)
        name = props["FunctionName"]
        self._set(logical_id, name, Arn=created["FunctionArn"])
        unknown = [arn for arn in props.get("Layers", []) if arn not in self.layer_dirs]
        if unknown:
            raise NotImplementedError(f"{logical_id}: the local runtime has no content for layers {unknown}")
        self.stack.functions[logical_id] = LocalFunction(
            logical_id, name, created["FunctionArn"], code_dir, handler, env, image_uri,
            [self.layer_dirs[arn] for arn in props.get("Layers", [])],
            props.get("DeadLetterConfig", {}).get("TargetArn"),
        )

    def create_Lambda_Version(self, logical_id: str, props: dict[str, Any]) -> None:
        version = self.client("lambda").publish_version(FunctionName=props["FunctionName"])
        self._set(logical_id, version["FunctionArn"], Version=version["Version"])

    def create_Lambda_Alias(self, logical_id: str, props: dict[str, Any]) -> None:
        alias = self.client("lambda").create_alias(
            FunctionName=props["FunctionName"], Name=props["Name"], FunctionVersion=props["FunctionVersion"]
        )
        self._set(logical_id, alias["AliasArn"])

    def create_Lambda_Permission(self, logical_id: str, props: dict[str, Any]) -> None:
        self._set(logical_id, f"{logical_id}-permission")  # resource policies are not evaluated locally

    def create_Lambda_Url(self, logical_id: str, props: dict[str, Any]) -> None:
        # Answered by the local approval server (local.runtime); its address is filled in there.
        url = self.stack.parameters.get("__FunctionUrlBase", "http://127.0.0.1/") + props["TargetFunctionArn"].split(":")[-1] + "/"
        self._set(logical_id, url, FunctionUrl=url, FunctionArn=props["TargetFunctionArn"])

    # --- orchestration --------------------------------------------------------------------------------
    def create_StepFunctions_StateMachine(self, logical_id: str, props: dict[str, Any]) -> None:
        source_path = Path(self.local_paths[logical_id])
        definition = source_path.read_text()
        for key, value in props.get("DefinitionSubstitutions", {}).items():
            definition = definition.replace("${" + key + "}", str(value))
        unresolved = re.findall(r"\$\{[A-Za-z0-9]+\}", definition)
        if unresolved:
            raise ValueError(f"{source_path.name}: substitutions without a value: {sorted(set(unresolved))}")
        arn = self.client("stepfunctions").create_state_machine(
            name=props["StateMachineName"], definition=definition, roleArn=props["RoleArn"], type=props.get("StateMachineType", "STANDARD")
        )["stateMachineArn"]
        # The substitutions as resolved: `make bench` runs a pinned historical revision of the ASL with them.
        substitutions = json.dumps({key: str(value) for key, value in props.get("DefinitionSubstitutions", {}).items()})
        self._set(logical_id, arn, Arn=arn, Name=props["StateMachineName"], DefinitionSubstitutions=substitutions)

    def create_Events_Rule(self, logical_id: str, props: dict[str, Any]) -> None:
        events = self.client("events")
        name = props.get("Name") or f"{self.stack.name}-{logical_id}"[:64]
        # A rule matches events (EventPattern) or runs on a schedule (ScheduleExpression; the local
        # runtime does not fire schedules on its own: `LocalRuntime.run_schedule` does, as the schedule would).
        match = {"ScheduleExpression": props["ScheduleExpression"]} if "ScheduleExpression" in props \
            else {"EventPattern": json.dumps(props["EventPattern"])}
        arn = events.put_rule(Name=name, State=props.get("State", "ENABLED"), **match)["RuleArn"]
        targets = [{"Id": t["Id"], "Arn": t["Arn"]} for t in props.get("Targets", [])]
        if targets:
            events.put_targets(Rule=name, Targets=targets)
        self._set(logical_id, name, Arn=arn)

    # --- the EC2 fleet --------------------------------------------------------------------------------
    def create_IAM_OIDCProvider(self, logical_id: str, props: dict[str, Any]) -> None:
        arn = self.client("iam").create_open_id_connect_provider(
            Url=props["Url"], ClientIDList=props.get("ClientIdList", []), ThumbprintList=props.get("ThumbprintList", []),
        )["OpenIDConnectProviderArn"]
        self._set(logical_id, arn, Arn=arn)

    def create_IAM_InstanceProfile(self, logical_id: str, props: dict[str, Any]) -> None:
        iam = self.client("iam")
        name = props.get("InstanceProfileName") or f"{self.stack.name}-{logical_id}"[:128]
        profile = iam.create_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        for role in props.get("Roles", []):
            iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=role)
        self._set(logical_id, name, Arn=profile["Arn"])

    def create_EC2_SecurityGroup(self, logical_id: str, props: dict[str, Any]) -> None:
        ec2 = self.client("ec2")
        group_id = ec2.create_security_group(GroupName=f"{self.stack.name}-{logical_id}", Description=props["GroupDescription"],
                                             VpcId=props["VpcId"])["GroupId"]

        def permissions(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
            out = []
            for rule in rules:
                perm: dict[str, Any] = {"IpProtocol": rule["IpProtocol"], "FromPort": int(rule["FromPort"]), "ToPort": int(rule["ToPort"])}
                if "CidrIp" in rule:
                    perm["IpRanges"] = [{"CidrIp": rule["CidrIp"], "Description": rule.get("Description", "")}]
                if "SourceSecurityGroupId" in rule:
                    perm["UserIdGroupPairs"] = [{"GroupId": rule["SourceSecurityGroupId"]}]
                out.append(perm)
            return out

        if props.get("SecurityGroupIngress"):
            ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=permissions(props["SecurityGroupIngress"]))
        if props.get("SecurityGroupEgress"):
            # As CloudFormation does: listed egress rules replace the default allow-all one.
            ec2.revoke_security_group_egress(GroupId=group_id, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
            ec2.authorize_security_group_egress(GroupId=group_id, IpPermissions=permissions(props["SecurityGroupEgress"]))
        self._set(logical_id, group_id, GroupId=group_id)

    def create_EC2_VPCEndpoint(self, logical_id: str, props: dict[str, Any]) -> None:
        args: dict[str, Any] = {"VpcId": props["VpcId"], "ServiceName": props["ServiceName"],
                                "VpcEndpointType": props.get("VpcEndpointType", "Gateway")}
        for key in ("SubnetIds", "SecurityGroupIds", "RouteTableIds"):
            if props.get(key):
                args[key] = props[key]
        if "PrivateDnsEnabled" in props:
            args["PrivateDnsEnabled"] = str(props["PrivateDnsEnabled"]).lower() == "true"
        endpoint = self.client("ec2").create_vpc_endpoint(**args)["VpcEndpoint"]
        self._set(logical_id, endpoint["VpcEndpointId"], Id=endpoint["VpcEndpointId"])

    def create_ElasticLoadBalancingV2_LoadBalancer(self, logical_id: str, props: dict[str, Any]) -> None:
        lb = self.client("elbv2").create_load_balancer(
            Name=props["Name"], Subnets=props["Subnets"], SecurityGroups=props.get("SecurityGroups", []),
            Scheme=props.get("Scheme", "internet-facing"), Type=props.get("Type", "application"),
        )["LoadBalancers"][0]
        if props.get("LoadBalancerAttributes"):
            self.client("elbv2").modify_load_balancer_attributes(LoadBalancerArn=lb["LoadBalancerArn"],
                                                                 Attributes=props["LoadBalancerAttributes"])
        full_name = lb["LoadBalancerArn"].split(":loadbalancer/", 1)[1]
        self._set(logical_id, lb["LoadBalancerArn"], DNSName=lb["DNSName"], LoadBalancerFullName=full_name,
                  LoadBalancerName=lb["LoadBalancerName"])

    def create_ElasticLoadBalancingV2_TargetGroup(self, logical_id: str, props: dict[str, Any]) -> None:
        keys = ("Name", "Protocol", "Port", "VpcId", "TargetType", "HealthCheckPath", "HealthCheckIntervalSeconds",
                "HealthyThresholdCount", "UnhealthyThresholdCount")
        group = self.client("elbv2").create_target_group(**{k: props[k] for k in keys if k in props})["TargetGroups"][0]
        arn = group["TargetGroupArn"]
        self._set(logical_id, arn, TargetGroupFullName=arn.split(":", 5)[5], TargetGroupName=group["TargetGroupName"])

    def create_ElasticLoadBalancingV2_Listener(self, logical_id: str, props: dict[str, Any]) -> None:
        listener = self.client("elbv2").create_listener(
            LoadBalancerArn=props["LoadBalancerArn"], Protocol=props["Protocol"], Port=int(props["Port"]),
            DefaultActions=props["DefaultActions"],
        )["Listeners"][0]
        self._set(logical_id, listener["ListenerArn"], ListenerArn=listener["ListenerArn"])

    def create_ElasticLoadBalancingV2_ListenerRule(self, logical_id: str, props: dict[str, Any]) -> None:
        rule = self.client("elbv2").create_rule(ListenerArn=props["ListenerArn"], Priority=int(props["Priority"]),
                                                Conditions=props["Conditions"], Actions=props["Actions"])["Rules"][0]
        self._set(logical_id, rule["RuleArn"])

    def create_EC2_LaunchTemplate(self, logical_id: str, props: dict[str, Any]) -> None:
        template = self.client("ec2").create_launch_template(
            LaunchTemplateName=props.get("LaunchTemplateName") or f"{self.stack.name}-{logical_id}",
            LaunchTemplateData=props["LaunchTemplateData"],
        )["LaunchTemplate"]
        self._set(logical_id, template["LaunchTemplateId"], LatestVersionNumber=str(template["LatestVersionNumber"]),
                  DefaultVersionNumber=str(template["DefaultVersionNumber"]))

    def create_AutoScaling_AutoScalingGroup(self, logical_id: str, props: dict[str, Any]) -> None:
        name = props.get("AutoScalingGroupName") or f"{self.stack.name}-{logical_id}"
        subnets = props["VPCZoneIdentifier"]
        self.client("autoscaling").create_auto_scaling_group(
            AutoScalingGroupName=name,
            LaunchTemplate={"LaunchTemplateId": props["LaunchTemplate"]["LaunchTemplateId"],
                            "Version": str(props["LaunchTemplate"]["Version"])},
            MinSize=int(props["MinSize"]), MaxSize=int(props["MaxSize"]), DesiredCapacity=int(props.get("DesiredCapacity", props["MinSize"])),
            VPCZoneIdentifier=",".join(subnets) if isinstance(subnets, list) else subnets,
            TargetGroupARNs=props.get("TargetGroupARNs", []), HealthCheckType=props.get("HealthCheckType", "EC2"),
            HealthCheckGracePeriod=int(props.get("HealthCheckGracePeriod", 0)),
            Tags=[{"Key": t["Key"], "Value": str(t["Value"]), "PropagateAtLaunch": bool(t.get("PropagateAtLaunch"))}
                  for t in props.get("Tags", [])],
        )
        self._set(logical_id, name)

    def create_CodeDeploy_Application(self, logical_id: str, props: dict[str, Any]) -> None:
        self.client("codedeploy").create_application(applicationName=props["ApplicationName"], computePlatform=props["ComputePlatform"])
        self._set(logical_id, props["ApplicationName"])

    def create_CodeDeploy_DeploymentGroup(self, logical_id: str, props: dict[str, Any]) -> None:
        args = {
            "applicationName": props["ApplicationName"],
            "deploymentGroupName": props["DeploymentGroupName"],
            "deploymentConfigName": props["DeploymentConfigName"],
            "serviceRoleArn": props["ServiceRoleArn"],
            "deploymentStyle": {"deploymentType": props["DeploymentStyle"]["DeploymentType"],
                                "deploymentOption": props["DeploymentStyle"]["DeploymentOption"]},
            "alarmConfiguration": {"enabled": props["AlarmConfiguration"]["Enabled"],
                                   "alarms": [{"name": a["Name"]} for a in props["AlarmConfiguration"]["Alarms"]]},
            "autoRollbackConfiguration": {"enabled": props["AutoRollbackConfiguration"]["Enabled"],
                                          "events": props["AutoRollbackConfiguration"]["Events"]},
        }
        self.client("codedeploy").create_deployment_group(**args)
        self._set(logical_id, props["DeploymentGroupName"])


def create_stack(session: Any, name: str, region: str, account: str, parameters: dict[str, Any], template: Path | None = None) -> Stack:
    """Create the stack of `template` (by default the one `sam build` wrote, see `built_template`)."""
    template = template or built_template()
    translated, local_paths, source = translate({k: v for k, v in parameters.items() if not k.startswith("__")}, region, template)
    parameters = dict(parameters)
    for key, spec in source.get("Parameters", {}).items():
        if key not in parameters and "Default" in spec:
            parameters[key] = spec["Default"]
        if spec.get("Type") == "CommaDelimitedList" and isinstance(parameters.get(key), str):
            parameters[key] = [part.strip() for part in parameters[key].split(",")]
        if spec.get("Type", "").startswith("AWS::SSM::Parameter::Value<") and isinstance(parameters.get(key), str):
            # CloudFormation resolves these parameters from SSM at deploy time (moto carries the public AMI ones).
            parameters[key] = session.client("ssm", region_name=region).get_parameter(Name=parameters[key])["Parameter"]["Value"]
    stack = Stack(name=name, region=region, account=account, parameters=parameters, resources=translated["Resources"],
                  mappings=translated.get("Mappings", {}))
    return Provisioner(session, stack, translated, local_paths, source).create_all()
