"""The Kubernetes source and the Lease election against a real API server.

No API server installs from the registries this project can reach (Debian has kubectl but no
kube-apiserver or k3s; PyPI's k3s/kind helpers download binaries or need Docker), so these tests
are marked k8s_live and deselected unless TALLY_K8S_LIVE=1, with KUBECONFIG pointing at a cluster
where they may create a pod and a Lease in TALLY_K8S_NAMESPACE (default: default).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from adapters.collectors.kubernetes import Kubernetes, KubernetesLease, _api_client
from workers.collector.config import KubernetesSource
from workers.collector.mapping import Mapper

pytestmark = pytest.mark.k8s_live
NAMESPACE = os.environ.get("TALLY_K8S_NAMESPACE", "default")


async def test_an_annotated_pod_becomes_an_event() -> None:
    from kubernetes import client

    core = client.CoreV1Api(_api_client())
    name = f"tally-collector-test-{uuid.uuid4().hex[:6]}"
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {"tally.io/subject": "live-test", "data.tally.io/team": "qa"}},
        "spec": {
            "containers": [
                {
                    "name": "pause",
                    "image": "registry.k8s.io/pause:3.9",
                    "resources": {"requests": {"cpu": "250m", "memory": "32Mi"}},
                }
            ]
        },
    }
    core.create_namespaced_pod(NAMESPACE, body)
    try:
        deadline = time.monotonic() + 120
        while core.read_namespaced_pod(name, NAMESPACE).status.phase != "Running":
            assert time.monotonic() < deadline, "pod did not start"
            await asyncio.sleep(1)
        await asyncio.sleep(2)
        source = KubernetesSource.model_validate(
            {
                "name": "live",
                "type": "kubernetes",
                "namespaces": [NAMESPACE],
                "schedule": {"interval": "1m"},
                "mapping": {
                    "type": "pod",
                    "subject": "subject",
                    "filter": "subject",
                    "data": {"cpu": "cpu_request_core_seconds"},
                },
            }
        )
        kubernetes = Kubernetes(source.name, source.selection())
        end = datetime.now(UTC)
        found = [r for r in await kubernetes.collect(end - timedelta(seconds=1), end) if r.values["name"] == name]
        await kubernetes.close()
        assert len(found) == 1
        event = Mapper("live", source.mapping).map(found[0])
        assert event["subject"] == "live-test"
        assert event["data"]["cpu"] == 0.25
        assert found[0].values["data"] == {"team": "qa"}
    finally:
        core.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)


async def test_one_lease_holder_at_a_time() -> None:
    lease = f"tally-collector-test-{uuid.uuid4().hex[:6]}"
    first = KubernetesLease(lease, NAMESPACE, lease_duration=3, retry_period=1, identity="first")
    second = KubernetesLease(lease, NAMESPACE, lease_duration=3, retry_period=1, identity="second")
    assert await first.try_acquire()
    assert not await second.try_acquire()
    assert await first.try_acquire()  # renews
    await asyncio.sleep(4.5)  # the first stops renewing: the lease expires for the second
    assert await second.try_acquire() or (await asyncio.sleep(1.5) is None and await second.try_acquire())
    assert not await first.try_acquire()
