"""Kubernetes source (pods, nodes, PVCs) and the Lease that elects the collector's leader.

The official `kubernetes` client lists the objects (raw JSON, the API's own form, so recorded API
objects in tests go through the very same code); quantities such as `500m` or `2Gi` are parsed by
the client's `parse_quantity` into Decimals. Each scheduled window [start, end) yields one record per
object that existed during it: how long it ran within the window, its resources, labels and
annotations. The subject comes from an annotation (`tally.io/subject` by default) and annotations
under a prefix (`data.tally.io/`) are passed on as `data`.

Runtime is clipped to the window, so consecutive windows add up to the object's lifetime and a
window run twice yields the same numbers. What the API no longer shows cannot be measured: a pod
deleted before the end of its last window is metered up to the window before.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from kubernetes.utils.quantity import parse_quantity

from adapters.collectors.records import Record, plain, record_time

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True, slots=True)
class Selection:
    """Which objects are metered and how their annotations are read."""

    resource: str = "pods"  # pods, nodes or persistentvolumeclaims
    subject_annotation: str = "tally.io/subject"
    data_annotation_prefix: str = "data.tally.io/"
    # Pods in these phases are metered (a pod's runtime counts while it runs).
    phases: tuple[str, ...] = ("Running", "Succeeded", "Failed")
    namespaces: tuple[str, ...] = field(default=())  # empty: all namespaces
    label_selector: str | None = None


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def _api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    from kubernetes import client, config

    configuration = client.Configuration()
    if kubeconfig is None and in_cluster():
        config.load_incluster_config(client_configuration=configuration)
    else:
        config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
    return client.ApiClient(configuration)


def quantity(value: Any) -> Decimal:
    """A Kubernetes quantity (`500m`, `2Gi`, `1e3`, a number) as an exact Decimal."""
    if value is None:
        return Decimal(0)
    return Decimal(parse_quantity(value))


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _overlap(begin: datetime | None, finish: datetime | None, start: datetime, end: datetime) -> Decimal:
    if begin is None:
        return Decimal(0)
    lower = max(begin, start)
    upper = min(finish or end, end)
    if upper <= lower:
        return Decimal(0)
    delta = upper - lower
    return Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds) / Decimal(1_000_000)


def _sum(resources: Iterable[dict[str, Any]]) -> dict[str, Decimal]:
    total: dict[str, Decimal] = {}
    for amounts in resources:
        _add(total, {name: quantity(amount) for name, amount in (amounts or {}).items()})
    return total


def pod_resources(spec: dict[str, Any], kind: str) -> dict[str, Decimal]:
    """A pod's effective requests or limits, as the scheduler counts (Kubernetes' PodRequests): the
    containers and every sidecar (a restartable init container) together, or, if larger, what any
    init container needs while it runs beside the sidecars started before it; plus the pod overhead."""
    running = _sum(c.get("resources", {}).get(kind, {}) for c in spec.get("containers", []))
    sidecars: dict[str, Decimal] = {}  # the sidecars started so far, in the init containers' order
    initializing: dict[str, Decimal] = {}  # the most any init container's step needs
    for init in spec.get("initContainers", []):
        amounts = _sum([init.get("resources", {}).get(kind, {})])
        if init.get("restartPolicy") == "Always":  # a sidecar: runs on beside the containers
            _add(sidecars, amounts)
            _add(running, amounts)
            step = sidecars
        else:
            step = _add(dict(amounts), sidecars)
        for name, amount in step.items():
            initializing[name] = max(initializing.get(name, Decimal(0)), amount)
    for name, amount in initializing.items():
        running[name] = max(running.get(name, Decimal(0)), amount)
    return _add(running, _sum([spec.get("overhead") or {}]))


def _add(total: dict[str, Decimal], amounts: dict[str, Decimal]) -> dict[str, Decimal]:
    for name, amount in amounts.items():
        total[name] = total.get(name, Decimal(0)) + amount
    return total


def _gpus(amounts: dict[str, Decimal]) -> Decimal:
    return sum((amount for name, amount in amounts.items() if name.endswith("/gpu")), Decimal(0))


def _pod_finished(status: dict[str, Any]) -> datetime | None:
    if status.get("phase") not in ("Succeeded", "Failed"):
        return None
    # Init containers and sidecars count: a pod that failed in its init container, or whose sidecar
    # stopped after the main container, held its requests until the last of them ended.
    containers = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
    finished = [
        _time(state["terminated"].get("finishedAt"))
        for container in containers
        if (state := container.get("state", {})) and "terminated" in state
    ]
    known = [moment for moment in finished if moment is not None]
    return max(known) if known else _time(status.get("startTime"))


def _common(obj: dict[str, Any], source: Selection) -> dict[str, Any]:
    meta = obj.get("metadata", {})
    annotations = meta.get("annotations") or {}
    prefix = source.data_annotation_prefix
    return {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
        "labels": meta.get("labels") or {},
        "annotations": annotations,
        "subject": annotations.get(source.subject_annotation),
        "data": {k.removeprefix(prefix): v for k, v in annotations.items() if prefix and k.startswith(prefix)},
    }


def _usage(amounts: dict[str, Decimal], seconds: Decimal, kind: str) -> dict[str, Decimal]:
    cpu, memory, gpu = amounts.get("cpu", Decimal(0)), amounts.get("memory", Decimal(0)), _gpus(amounts)
    return {
        f"cpu_{kind}_cores": cpu,
        f"memory_{kind}_bytes": memory,
        f"gpu_{kind}": gpu,
        f"cpu_{kind}_core_seconds": cpu * seconds,
        f"memory_{kind}_byte_seconds": memory * seconds,
        f"gpu_{kind}_seconds": gpu * seconds,
    }


def pod_record(pod: dict[str, Any], source: Selection, start: datetime, end: datetime) -> Record | None:
    status = pod.get("status", {})
    if status.get("phase") not in source.phases:
        return None
    begin = _time(status.get("startTime"))
    seconds = _overlap(begin, _pod_finished(status), start, end)
    if seconds <= 0:
        return None
    spec = pod.get("spec", {})
    requests, limits = pod_resources(spec, "requests"), pod_resources(spec, "limits")
    values = _common(pod, source) | {
        "node": spec.get("nodeName"),
        "phase": status.get("phase"),
        "qos_class": status.get("qosClass"),
        "duration_seconds": seconds,
        "resources": {"requests": requests, "limits": limits},
        **_usage(requests, seconds, "request"),
        **_usage(limits, seconds, "limit"),
    }
    return _record(values, start, end)


def node_record(node: dict[str, Any], source: Selection, start: datetime, end: datetime) -> Record | None:
    meta = node.get("metadata", {})
    seconds = _overlap(_time(meta.get("creationTimestamp")), _time(meta.get("deletionTimestamp")), start, end)
    if seconds <= 0:
        return None
    status = node.get("status", {})
    capacity, allocatable = _sum([status.get("capacity") or {}]), _sum([status.get("allocatable") or {}])
    values = _common(node, source) | {
        "duration_seconds": seconds,
        "resources": {"capacity": capacity, "allocatable": allocatable},
        **_usage(capacity, seconds, "capacity"),
        **_usage(allocatable, seconds, "allocatable"),
    }
    return _record(values, start, end)


def pvc_record(pvc: dict[str, Any], source: Selection, start: datetime, end: datetime) -> Record | None:
    meta = pvc.get("metadata", {})
    status = pvc.get("status", {})
    if status.get("phase") != "Bound":
        return None
    seconds = _overlap(_time(meta.get("creationTimestamp")), _time(meta.get("deletionTimestamp")), start, end)
    if seconds <= 0:
        return None
    spec = pvc.get("spec", {})
    requested = quantity((spec.get("resources", {}).get("requests") or {}).get("storage"))
    capacity = quantity((status.get("capacity") or {}).get("storage"))
    values = _common(pvc, source) | {
        "storage_class": spec.get("storageClassName"),
        "volume": spec.get("volumeName"),
        "duration_seconds": seconds,
        "storage_request_bytes": requested,
        "storage_capacity_bytes": capacity,
        "storage_request_byte_seconds": requested * seconds,
        "storage_capacity_byte_seconds": capacity * seconds,
    }
    return _record(values, start, end)


def _record(values: dict[str, Any], start: datetime, end: datetime) -> Record:
    values = plain(values) | {"window": {"start": record_time(start), "end": record_time(end)}}
    key = values.get("uid") or f"{values.get('namespace')}/{values.get('name')}"
    # The event time is the window's end: the usage it measures is complete then.
    return Record(values=values, key=str(key), window=f"{record_time(start)}/{record_time(end)}", time=end)


RECORDS = {"pods": pod_record, "nodes": node_record, "persistentvolumeclaims": pvc_record}


def records(objects: Iterable[dict[str, Any]], source: Selection, start: datetime, end: datetime) -> list[Record]:
    build = RECORDS[source.resource]
    return [record for obj in objects if (record := build(obj, source, start, end)) is not None]


class Kubernetes:
    def __init__(
        self, name: str, selection: Selection, kubeconfig: str | None = None, context: str | None = None
    ) -> None:
        self.name = name
        self.selection = selection
        self.kubeconfig = kubeconfig
        self.context = context
        self._api: Any = None

    def _list(self) -> list[dict[str, Any]]:
        from kubernetes import client

        if self._api is None:
            self._api = client.CoreV1Api(_api_client(self.kubeconfig, self.context))
        api = self._api
        selection = self.selection
        selector: dict[str, Any] = {"label_selector": selection.label_selector} if selection.label_selector else {}
        resource = selection.resource
        # (method, positional arguments) per list call: one per namespace, or one for the cluster.
        calls: list[tuple[Any, tuple[str, ...]]]
        if resource == "nodes":
            calls = [(api.list_node, ())]
        elif selection.namespaces:
            method = api.list_namespaced_pod if resource == "pods" else api.list_namespaced_persistent_volume_claim
            calls = [(method, (namespace,)) for namespace in selection.namespaces]
        elif resource == "pods":
            calls = [(api.list_pod_for_all_namespaces, ())]
        else:
            calls = [(api.list_persistent_volume_claim_for_all_namespaces, ())]
        items: list[dict[str, Any]] = []
        for method, args in calls:
            token: str | None = None
            while True:
                page: dict[str, Any] = {"_continue": token} if token else {}
                response = method(*args, limit=500, _preload_content=False, **selector, **page)
                body = orjson.loads(response.data)
                items.extend(body.get("items", []))
                token = body.get("metadata", {}).get("continue")
                if not token:
                    break
        return items

    async def collect(self, start: datetime, end: datetime) -> list[Record]:
        objects = await asyncio.to_thread(self._list)
        return records(objects, self.selection, start, end)

    async def close(self) -> None:
        if self._api is not None:
            self._api.api_client.close()


class KubernetesLease:
    """A coordination.k8s.io Lease through the client's own LeaseLock and LeaderElection logic.

    Only `try_acquire_or_renew` is used (run in a thread): its blocking run loop and callbacks do
    not fit an asyncio process; `workers.collector.leader.lead` provides the loop.
    """

    def __init__(
        self,
        lease_name: str,
        lease_namespace: str | None,
        lease_duration: float,
        retry_period: float,
        identity: str | None = None,
    ) -> None:
        from kubernetes import client
        from kubernetes.leaderelection import electionconfig, leaderelection
        from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

        api = _api_client()
        client.Configuration.set_default(api.configuration)
        namespace = lease_namespace or (
            SERVICE_ACCOUNT_NAMESPACE.read_text().strip() if SERVICE_ACCOUNT_NAMESPACE.exists() else "default"
        )
        identity = identity or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        lock = LeaseLock(lease_name, namespace, identity)
        renew_deadline = lease_duration * 2 / 3
        self.election = leaderelection.LeaderElection(
            electionconfig.Config(
                lock,
                lease_duration=int(lease_duration),
                renew_deadline=renew_deadline,
                retry_period=retry_period,
                onstarted_leading=lambda: None,
                onstopped_leading=lambda: None,
            )
        )
        self.identity = identity

    async def try_acquire(self) -> bool:
        return bool(await asyncio.to_thread(self.election.try_acquire_or_renew))

    async def release(self) -> None:
        # The lease expires by itself; a successor waits at most lease_duration.
        return None
