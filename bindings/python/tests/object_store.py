"""A local S3 server (moto's) for the tests of object-store targets, and the environment
that points the library's S3 client at it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto_server import environment


@contextmanager
def s3_server(bucket: str) -> Iterator[dict[str, str]]:
    """Runs moto's S3 server on 127.0.0.1 with an empty ``bucket``, and sets the AWS
    variables in ``os.environ`` while the block runs; yields them."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    try:
        with environment(env):
            client(env).create_bucket(Bucket=bucket)
            yield env
    finally:
        server.stop()


def client(env: dict[str, str]) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    )


def names(env: dict[str, str], bucket: str, prefix: str) -> list[str]:
    """The names of the objects under ``prefix``."""
    listing = client(env).list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(str(item["Key"]) for item in listing.get("Contents", []))
