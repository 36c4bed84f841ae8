"""Proving an organization owns a domain with a DNS TXT record, as the IETF
draft on domain verification techniques recommends: a random token per
organization and domain, published at `_costguardian-challenge.<domain>` as
`costguardian-verification=<token>`. Once seen, colleagues with a confirmed
address at the domain may join (orgs.join_by_email_domain). A daily task
checks verified domains again and withdraws a domain whose record is gone.

Lookups use dnspython; CG_DNS_NAMESERVERS points them at chosen servers (the
tests' local DNS server), else the system's resolver is used. Public suffixes
(com, co.uk, github.io …) come from the list bundled with `publicsuffixlist`
and can never be claimed."""
from __future__ import annotations

import secrets
from functools import lru_cache

from flask import current_app

from costguardian import clock, permissions
from costguardian.extensions import db
from costguardian.models import DomainVerification, Organization
from costguardian.services.actor import Actor
from costguardian.services.errors import RuleViolation, ValidationError
from costguardian.services.team import audit, orgs

RECORD_PREFIX = "_costguardian-challenge"
VALUE_PREFIX = "costguardian-verification="
LOOKUP_SECONDS = 3.0


@lru_cache(maxsize=1)
def _suffixes():
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def is_public_suffix(domain: str) -> bool:
    return _suffixes().is_public(domain)


def ascii_domain(domain: str | None) -> str:
    """`domain` trimmed, lower-case and IDNA-encoded (bücher.example →
    xn--bcher-kva.example); text that cannot be encoded comes back as typed,
    for the validation to refuse."""
    text = (domain or "").strip().lower().lstrip("@").rstrip(".")
    try:
        return text.encode("idna").decode("ascii")
    except UnicodeError:
        return text


def normalized(domain: str) -> str:
    """The domain as stored (lower-case ASCII), or a ValidationError on `domain`."""
    text = (domain or "").strip().lower().lstrip("@").rstrip(".")
    if not text:
        raise ValidationError({"domain": "Enter your company's domain, like example.com."})
    try:
        ascii_name = text.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValidationError({"domain": "This is not a domain name; enter one like example.com."}) from None
    if not orgs._DOMAIN.fullmatch(ascii_name):
        raise ValidationError({"domain": "Enter a domain like example.com (without the @ or https://)."})
    if ascii_name in orgs.PUBLIC_EMAIL_DOMAINS:
        raise ValidationError({"domain": f"Anyone can have an address at {ascii_name}; use your company's own "
                                         "domain."})
    if is_public_suffix(ascii_name):
        raise ValidationError({"domain": f"{ascii_name} is a public suffix (many unrelated owners share it); "
                                         "enter your own domain under it."})
    return ascii_name


def record(verification: DomainVerification) -> tuple[str, str]:
    """(name, value) of the TXT record to publish."""
    return f"{RECORD_PREFIX}.{verification.domain}", f"{VALUE_PREFIX}{verification.token}"


def _claimed_elsewhere(org: Organization, domain: str) -> Organization | None:
    other = (DomainVerification.select().where(DomainVerification.domain == domain,
                                               DomainVerification.verified_at.is_null(False),
                                               DomainVerification.organization != org).first())
    if other is not None:
        return other.organization
    return (Organization.select().where(Organization.join_domain == domain,
                                        Organization.join_domain_verified_at.is_null(False),
                                        Organization.id != org.id).first())


def start(org: Organization, actor: Actor, domain: str) -> DomainVerification:
    """The organization's verification of `domain` (the same token when asked
    again). Refuses public suffixes and domains another organization verified."""
    domain = normalized(domain)
    if _claimed_elsewhere(org, domain) is not None:
        raise ValidationError({"domain": f"{domain} is already verified by another organization."})
    found = DomainVerification.in_org(org).where(DomainVerification.domain == domain).first()
    if found is not None:
        return found
    try:
        with db.atomic():
            created = DomainVerification.create(organization=org, domain=domain, token=secrets.token_urlsafe(24))
    except Exception:  # a concurrent start made it
        return DomainVerification.in_org(org).where(DomainVerification.domain == domain).get()
    audit.record(actor, "org.domain_verification_started", org=org, target=org, domain=domain)
    return created


def latest(org: Organization) -> DomainVerification | None:
    return DomainVerification.in_org(org).order_by(DomainVerification.created_at.desc(),
                                                   DomainVerification.id.desc()).first()


def for_domain(org: Organization, domain: str | None) -> DomainVerification | None:
    if not domain:
        return None
    return DomainVerification.in_org(org).where(DomainVerification.domain == domain).first()


def _host_port(item: str) -> tuple[str, int]:
    """"1.1.1.1:53", "1.1.1.1", "[2606:4700::1111]:53" or "2606:4700::1111"
    → (address, port), port 53 unless given."""
    item = item.strip()
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        return host, int(rest.lstrip(":") or 53)
    if item.count(":") == 1:
        host, _, port = item.partition(":")
        return host, int(port or 53)
    return item, 53


def _resolver():
    import dns.nameserver
    import dns.resolver

    configured = (current_app.config.get("CG_DNS_NAMESERVERS") or "").strip()
    if not configured:
        resolver = dns.resolver.Resolver()
    else:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port)
                                for host, port in map(_host_port, configured.split(",")) if host]
    resolver.lifetime = LOOKUP_SECONDS
    resolver.timeout = LOOKUP_SECONDS
    return resolver


class LookupFailed(Exception):
    """DNS did not answer (timeout, server failure): nothing can be concluded."""


def published_values(name: str) -> list[str]:
    """The TXT strings at `name` ([] when the name or the record does not exist)."""
    import dns.exception
    import dns.resolver

    try:
        answer = _resolver().resolve(name, "TXT", raise_on_no_answer=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout) as exc:
        raise LookupFailed(str(exc) or type(exc).__name__) from exc
    if answer.rrset is None:
        return []
    return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer.rrset]


def check(org: Organization, actor: Actor, domain: str) -> DomainVerification:
    """Look for the record now. Found: the domain is verified and people at it
    may join (with the organization's join role, member by default)."""
    verification = start(org, actor, domain)
    name, value = record(verification)
    now = clock.now()
    try:
        values = published_values(name)
    except LookupFailed as exc:
        verification.last_error = f"DNS did not answer ({exc}); try again in a minute."
        values = None
    if values is not None and value in values:
        if _claimed_elsewhere(org, verification.domain) is not None:
            raise RuleViolation(f"{verification.domain} was verified by another organization meanwhile.")
        verification.verified_at = verification.verified_at or now
        verification.last_error = ""
        verification.last_checked_at = now
        verification.save()
        if org.join_domain != verification.domain or org.join_domain_verified_at is None:
            role = org.join_domain_role or permissions.MEMBER
            org.join_domain, org.join_domain_role = verification.domain, role
            orgs.verify_join_domain(org, verification.domain, actor)
        return verification
    if values is not None:
        verification.last_error = (f"No TXT record {value} at {name} yet." if not values else
                                   f"The TXT record at {name} holds something else; it must be {value}.")
    verification.last_checked_at = now
    verification.save()
    return verification


def recheck_all() -> int:
    """The daily check: a verified domain whose record is gone (the name or
    the value no longer exists; not a DNS outage) stops letting people join,
    and the owners are told. Returns how many were withdrawn."""
    from costguardian.services.notifications import notify as notifications

    withdrawn = 0
    for verification in DomainVerification.select().where(DomainVerification.verified_at.is_null(False)):
        name, value = record(verification)
        try:
            values = published_values(name)
        except LookupFailed:
            continue
        verification.last_checked_at = clock.now()
        if value in values:
            verification.save()
            continue
        verification.verified_at = None
        verification.last_error = f"The TXT record at {name} disappeared."
        verification.save()
        org = verification.organization
        if org.join_domain == verification.domain and org.join_domain_verified_at is not None:
            org.join_domain_verified_at = None
            org.save(only=[Organization.join_domain_verified_at])
        audit.record(Actor.system(), "org.domain_unverified", org=org, target=org, domain=verification.domain)
        notifications.notify(org, "org.domain_unverified", {"domain": verification.domain, "record": name},
                             once=f"org.domain_unverified:{verification.domain}:{verification.id}:"
                                  f"{clock.now().date().isoformat()}")
        withdrawn += 1
    return withdrawn
