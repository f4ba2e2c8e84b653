"""What an S3 bucket holds, asked through the S3 API with boto3 (an S3 client independent of
radport's): the distributed tests' oracle.

    s3_oracle.py list BUCKET PREFIX     JSON object {key: size}, every page of ListObjectsV2
    s3_oracle.py get BUCKET KEY         the object's bytes on stdout
    s3_oracle.py uploads BUCKET         JSON list of the keys of unfinished multipart uploads
    s3_oracle.py sha256 BUCKET PREFIX   JSON object {key: hex SHA-256 of the object's bytes}

Endpoint, region and credentials come from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY.
"""

import hashlib
import json
import os
import sys

import boto3
from botocore.config import Config


def client():
    return boto3.client(
        "s3",
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        region_name=os.environ.get("AWS_REGION", "garage"),
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
    )


def main(argv):
    command = argv[1]
    s3 = client()
    if command == "list":
        bucket, prefix = argv[2], argv[3]
        out = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                out[item["Key"]] = item["Size"]
        json.dump(out, sys.stdout)
    elif command == "get":
        body = s3.get_object(Bucket=argv[2], Key=argv[3])["Body"].read()
        sys.stdout.buffer.write(body)
    elif command == "sha256":
        bucket, prefix = argv[2], argv[3]
        out = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                out[item["Key"]] = hashlib.sha256(body).hexdigest()
        json.dump(out, sys.stdout)
    elif command == "uploads":
        keys = []
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=argv[2]):
            keys.extend(u["Key"] for u in page.get("Uploads", []))
        json.dump(keys, sys.stdout)
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv)
