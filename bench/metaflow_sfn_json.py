"""Python Metaflow's ``step-functions create --only-json`` for a flow file, offline: every AWS client it makes
talks to moto in-process, where the bucket, the Batch job queue (on a Fargate compute environment, whose
type Metaflow reads to register its job definitions) and nothing else exist.

Run with bench/.venv-metaflow's python (Python Metaflow and moto):
    python bench/metaflow_sfn_json.py FLOW.py [create options, e.g. --use-distributed-map]
The environment must hold Metaflow's settings; bench/sfn_scale.py sets them.
"""
from __future__ import annotations

import os
import runpy
import sys

os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

with mock_aws():
    boto3.client("s3").create_bucket(Bucket="mf-bench")
    role = boto3.client("iam").create_role(RoleName="batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="bench", Description="bench", VpcId=vpc)["GroupId"]
    batch = boto3.client("batch")
    batch.create_compute_environment(computeEnvironmentName="bench-ce", type="MANAGED", serviceRole=role,
                                     computeResources={"type": "FARGATE", "maxvCpus": 256, "subnets": [subnet],
                                                       "securityGroupIds": [group]})
    batch.create_job_queue(jobQueueName="bench-queue", priority=1, state="ENABLED",
                           computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "bench-ce"}])
    flow, options = sys.argv[1], sys.argv[2:]
    sys.argv = [flow, "--no-pylint", "--datastore", "s3", "step-functions", "create", "--only-json", *options]
    runpy.run_path(flow, run_name="__main__")
