"""Credentials, scopes, the RPC-to-scope map and the start-up policy, without a server."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta

import pytest

from domain.auth.models import (
    API_KEY_MARK,
    ApiKey,
    ApiKeyCreateInput,
    PortalTokenCreateInput,
    PortalTokenInvalidateInput,
    Scope,
    grants,
    hash_credential,
    new_credential,
    parse_prefix,
)
from domain.auth.service import ApiKeyService, TtlCache
from domain.errors import NotFoundError, UnauthenticatedError, ValidationError
from server.auth import (
    ADMIN_SERVICES,
    PORTAL,
    PORTAL_METHODS,
    READ_PREFIXES,
    WRITE_PREFIXES,
    is_loopback,
    required_scope,
)
from server.config import Settings
from server.wiring.auth import auth_required
from tests.support.services import ROOT

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def tally_methods() -> list[str]:
    methods = []
    # Every service of the API: a file left out here let its methods fall through to admin unseen.
    for proto in sorted((ROOT / "proto" / "tally" / "v1").glob("*.proto")):
        file = importlib.import_module(f"tally.v1.{proto.stem}_pb2").DESCRIPTOR
        for service in file.services_by_name.values():
            methods += [f"/{service.full_name}/{method.name}" for method in service.methods]
    return methods


def test_every_rpc_maps_to_a_scope_by_rule() -> None:
    methods = tally_methods()
    assert len(methods) > 60
    for full in methods:
        service, method = full[1:].split("/")
        need = required_scope(full)
        assert need is not None, full
        ruled = (
            service in ADMIN_SERVICES
            or f"{service}/{method}" in PORTAL_METHODS
            or method.startswith(("Ingest", *READ_PREFIXES, *WRITE_PREFIXES))
        )
        assert ruled, f"{full} falls through to the fail-closed default; give it a rule"


@pytest.mark.parametrize(
    ("method", "need"),
    [
        ("/tally.v1.EventService/IngestEvents", Scope.INGEST),
        ("/tally.v1.EventService/IngestCloudEvents", Scope.INGEST),
        ("/tally.v1.EventService/IngestEventStream", Scope.INGEST),
        ("/tally.v1.EventService/ListEvents", Scope.READ),
        ("/tally.v1.MeterService/QueryMeterCsv", Scope.READ),
        ("/tally.v1.EntitlementService/GetCustomerEntitlementValue", Scope.READ),
        ("/tally.v1.EntitlementService/GetCustomerEntitlementHistory", Scope.READ),
        ("/tally.v1.NotificationService/StreamNotificationEvents", Scope.READ),
        ("/tally.v1.MeterService/CreateMeter", Scope.WRITE),
        ("/tally.v1.EntitlementService/VoidGrant", Scope.WRITE),
        ("/tally.v1.EntitlementService/ResetCustomerEntitlementUsage", Scope.WRITE),
        ("/tally.v1.EntitlementService/OverrideCustomerEntitlement", Scope.WRITE),
        ("/tally.v1.PortalService/CreatePortalToken", Scope.WRITE),
        ("/tally.v1.PortalService/ListPortalTokens", Scope.READ),
        ("/tally.v1.PortalService/QueryPortalMeter", PORTAL),
        ("/tally.v1.ApiKeyService/ListApiKeys", Scope.ADMIN),
        ("/tally.v1.CallerService/GetCaller", Scope.READ),
        ("/tally.v1.MeterService/PreviewMeter", Scope.READ),
        ("/tally.v1.AppService/InstallMarketplaceListing", Scope.WRITE),
        ("/tally.v1.AppService/UninstallApp", Scope.WRITE),
        ("/tally.v1.AppService/ListMarketplaceListings", Scope.READ),
        ("/tally.v1.BillingProfileService/UpsertBillingProfileCustomerOverride", Scope.WRITE),
        ("/tally.v1.PlanService/PublishPlan", Scope.WRITE),
        ("/tally.v1.InvoiceService/AdvanceInvoice", Scope.WRITE),
        ("/tally.v1.InvoiceService/SimulateInvoice", Scope.READ),
        ("/tally.v1.SubscriptionService/CancelSubscription", Scope.WRITE),
        ("/tally.v1.MeterService/SomethingNew", Scope.ADMIN),
        ("/grpc.health.v1.Health/Check", None),
        ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", None),
        ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", None),
    ],
)
def test_required_scope(method: str, need: object) -> None:
    assert required_scope(method) == need


def test_admin_implies_every_scope() -> None:
    assert all(grants([Scope.ADMIN], scope) for scope in Scope)
    assert grants([Scope.READ], Scope.READ)
    assert not grants([Scope.READ], Scope.WRITE)
    assert not grants([Scope.INGEST, Scope.WRITE], Scope.READ)


def test_credentials_are_random_and_parse_back() -> None:
    pepper = b"pepper"
    one, two = new_credential(API_KEY_MARK, pepper), new_credential(API_KEY_MARK, pepper)
    assert one.value != two.value and one.prefix != two.prefix
    assert parse_prefix(one.value, API_KEY_MARK) == one.prefix
    assert one.secret_hash == hash_credential(one.value, pepper) != hash_credential(one.value, b"other")
    assert one.value.removeprefix(f"tly_{one.prefix}_") not in one.secret_hash.hex()
    for bad in ("", "tly", "tly__", f"tlyp_{one.prefix}_{'a' * 40}", f"tly_{one.prefix}_short", "tly_ab_cd_ef"):
        assert parse_prefix(bad, API_KEY_MARK) is None
    assert parse_prefix(f"tly_{one.prefix}_{'é' * 40}", API_KEY_MARK) is None


def test_inputs_validate() -> None:
    assert ApiKeyCreateInput("k", ["read", "ingest", "read"]).validate("tenant-a", NOW) == (Scope.INGEST, Scope.READ)
    with pytest.raises(ValidationError) as bad:
        ApiKeyCreateInput("", ["root"], NOW - timedelta(1)).validate("Bad NS", NOW)
    assert {v.field for v in bad.value.violations} == {"namespace", "name", "scopes", "expiresAt"}
    with pytest.raises(ValidationError):
        ApiKeyCreateInput("k", []).validate("a", NOW)
    PortalTokenCreateInput("s", None).validate(NOW)
    with pytest.raises(ValidationError):
        PortalTokenCreateInput("s", []).validate(NOW)
    with pytest.raises(ValidationError):
        PortalTokenCreateInput("", ["Not A Slug"], NOW).validate(NOW)
    with pytest.raises(ValidationError):
        PortalTokenInvalidateInput().validate()
    PortalTokenInvalidateInput(subject="s").validate()


def test_ttl_cache_expires_and_bounds_itself() -> None:
    clock = [0.0]
    cache: TtlCache[str] = TtlCache(1.0, max_entries=3, clock=lambda: clock[0])
    cache.put(b"a", "A")
    cache.put(b"miss", None)
    assert cache.get(b"a") == (True, "A") and cache.get(b"miss") == (True, None)
    clock[0] = 1.0
    assert cache.get(b"a") == (False, None)
    for i in range(10):
        cache.put(bytes([i]), str(i))
    assert cache.get(bytes([9])) == (True, "9")


class MemoryKeys:
    def __init__(self) -> None:
        self.rows: dict[str, tuple[ApiKey, bytes]] = {}
        self.lookups = 0

    async def create(self, key: ApiKey, secret_hash: bytes) -> None:
        self.rows[key.prefix] = (key, secret_hash)

    async def find_by_prefix(self, prefix: str) -> tuple[ApiKey, bytes] | None:
        self.lookups += 1
        return self.rows.get(prefix)

    async def list_keys(self, namespace: str | None, include_revoked: bool) -> list[ApiKey]:
        return [k for k, _ in self.rows.values() if namespace in (None, k.namespace)]

    async def revoke(self, namespace: str | None, id_or_prefix: str, now: datetime) -> ApiKey | None:
        for prefix, (key, digest) in self.rows.items():
            if id_or_prefix in (key.id, prefix) and namespace in (None, key.namespace):
                revoked = ApiKey(**{**{f: getattr(key, f) for f in key.__slots__}, "revoked_at": now})
                self.rows[prefix] = (revoked, digest)
                return revoked
        return None

    async def count_active(self, now: datetime) -> int:
        return sum(k.active(now) for k, _ in self.rows.values())


async def test_authenticate_caches_and_revocation_is_immediate_here() -> None:
    repo = MemoryKeys()
    service = ApiKeyService(repo, b"pepper", cache_ttl=60)
    created = await service.create("tenant-a", ApiKeyCreateInput("k", ["read"]))
    assert (await service.authenticate(created.secret)).id == created.key.id
    await service.authenticate(created.secret)
    assert repo.lookups == 1
    tampered = created.secret[:-1] + ("A" if created.secret[-1] != "A" else "B")
    with pytest.raises(UnauthenticatedError):
        await service.authenticate(tampered)
    with pytest.raises(NotFoundError):
        await service.revoke("tenant-b", created.key.id)
    await service.revoke("tenant-a", created.key.prefix)
    with pytest.raises(UnauthenticatedError):
        await service.authenticate(created.secret)
    assert await service.count_active() == 0


def test_policy_defaults() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("example.com")
    assert not auth_required(Settings())
    assert auth_required(Settings(grpc_host="0.0.0.0"))
    assert auth_required(Settings(rest_host="10.1.2.3"))
    # A sidecar Envoy (not Tally's own) may expose a loopback gRPC server: not loopback-only.
    assert auth_required(Settings(envoy_enabled=False))
    assert auth_required(Settings(auth={"required": True}))
    assert not auth_required(Settings(grpc_host="0.0.0.0", auth={"required": False}))
