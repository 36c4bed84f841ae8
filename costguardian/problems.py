"""The JSON API's problem types (RFC 9457): each `type` is a URL on this
installation, /docs/problems/<kind>, whose page explains the problem and what
to do. A test scans the code for every kind it answers and checks each has an
entry here (tests/test_docs.py)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProblemType:
    status: int
    title: str
    meaning: str
    fix: str


_KEY_FIX = "Send the key as `Authorization: Bearer cg_live_…` (or `cg_test_…`); keys are made on the API keys page."
_TOKEN_FIX = "Send a platform token as `Authorization: Bearer cgp_…`; tokens are made on your account page."

PROBLEM_TYPES: dict[str, ProblemType] = {
    # Authentication and authorization
    "missing-api-key": ProblemType(401, "Missing API key", "The request carried no `Authorization` header.",
                                   _KEY_FIX),
    "invalid-api-key": ProblemType(401, "Invalid API key",
                                   "The `Authorization` header does not hold a Cost Guardian API key, or no key "
                                   "with this text exists.", _KEY_FIX + " Check for a missing or extra character."),
    "revoked-api-key": ProblemType(401, "Revoked API key", "The key was revoked on the API keys page.",
                                   "Create a new key and update your service."),
    "expired-api-key": ProblemType(401, "Expired API key",
                                   "The key's expiry date has passed, or it was rotated and its grace period ended.",
                                   "Use the key's new secret, or create a new key."),
    "insufficient-scope": ProblemType(403, "Insufficient scope",
                                      "The key (or platform token) is valid but lacks the scope this operation "
                                      "needs (`ingest`, `read`, `gateway` or `admin`).",
                                      "Create a key with the scope the operation's documentation names."),
    "missing-platform-token": ProblemType(401, "Missing platform token",
                                          "The platform admin API needs a platform token.", _TOKEN_FIX),
    "invalid-platform-token": ProblemType(401, "Invalid platform token", "No platform token with this text exists.",
                                          _TOKEN_FIX),
    "revoked-platform-token": ProblemType(401, "Revoked platform token", "The platform token was revoked.",
                                          "Create a new token on your account page."),
    "expired-platform-token": ProblemType(401, "Expired platform token", "The platform token's expiry has passed.",
                                          "Create a new token on your account page."),
    "not-permitted": ProblemType(403, "Not permitted",
                                 "The key or token is valid, but what it asks is not allowed (for example the "
                                 "person it acts for no longer has the role).", "Read `detail`; it names the rule."),
    "organization-suspended": ProblemType(403, "Organization suspended",
                                          "The platform's operators suspended this organization; nothing is "
                                          "recorded until they lift the suspension.",
                                          "Contact the people who run this installation."),
    # Bodies and parameters
    "unsupported-media-type": ProblemType(415, "Unsupported media type", "The body was not sent as JSON.",
                                          "Send `Content-Type: application/json`."),
    "malformed-json": ProblemType(422, "Malformed JSON",
                                  "The body is not valid JSON (or uses NaN or Infinity, which JSON does not have).",
                                  "Check the body with a JSON parser before sending."),
    "invalid-body": ProblemType(422, "Invalid body", "The body is JSON, but not the shape the operation takes.",
                                "Send one event object or `{\"events\": [...]}`; see `detail`."),
    "too-many-events": ProblemType(422, "Too many events", "A batch holds at most 1,000 events.",
                                   "Split the batch; each event's `event_id` makes resending safe."),
    "invalid-event": ProblemType(422, "Invalid event", "A single event was rejected; `errors` names each field.",
                                 "Fix the fields listed in `errors` and send the event again."),
    "invalid-request": ProblemType(422, "Invalid request", "Fields of the body are missing, unknown or not valid.",
                                   "Fix the fields listed in `errors`."),
    "invalid-parameter": ProblemType(422, "Invalid parameter", "A query parameter is not valid.",
                                     "Fix the parameters listed in `errors`; dates are `YYYY-MM-DD`."),
    "invalid-parameters": ProblemType(422, "Invalid parameters", "Query parameters are not valid.",
                                      "Fix the parameters listed in `errors`; dates are `YYYY-MM-DD`."),
    "rule-violation": ProblemType(409, "Rule violation",
                                  "The request is well-formed but breaks a rule (a name already in use, the last "
                                  "owner removed, …).", "Read `detail`; it names the rule."),
    "seat-limit": ProblemType(409, "Seat limit reached",
                              "The organization's plan has no free seat for another member.",
                              "An owner can add seats or change plan; `upgrade_url` links to billing."),
    # Billing
    "billing-disabled": ProblemType(404, "Billing is off",
                                    "This installation does not charge for Cost Guardian; the billing API is off.",
                                    "Nothing to do: every feature is available."),
    "stripe-unavailable": ProblemType(503, "Payment provider unavailable",
                                      "The payment provider did not answer; nothing was changed.",
                                      "Try again in a minute; send the same `Idempotency-Key`."),
    # HTTP errors answered by routing or the framework (web.PROBLEM_KINDS)
    "not-found": ProblemType(404, "Not found",
                             "Nothing is at this address, or the id names a row of another organization.",
                             "Check the path and the id."),
    "method-not-allowed": ProblemType(405, "Method not allowed", "The path exists, but not with this method.",
                                      "Use a method the `Allow` header lists."),
    "payload-too-large": ProblemType(413, "Payload too large", "The body is over 4 MB.",
                                     "Send smaller batches."),
    "rate-limited": ProblemType(429, "Rate limited", "Too many requests in a short time.",
                                "Wait for the time in `Retry-After`, then retry."),
    "http-400": ProblemType(400, "Bad request", "The request could not be understood.", "Read `detail`."),
    "http-401": ProblemType(401, "Sign in required", "The request needs authentication.",
                            "Send an API key as a Bearer token."),
    "http-403": ProblemType(403, "You don't have access", "The request is authenticated but not allowed.",
                            "Read `detail`."),
    "http-409": ProblemType(409, "Not possible yet", "The request conflicts with the current state.",
                            "Read `detail`, then retry when it allows."),
    "http-500": ProblemType(500, "Something went wrong",
                            "An unexpected error; it was logged for the operators.",
                            "Retry; if it persists, tell the people who run this installation."),
    "http-503": ProblemType(503, "Unavailable", "The service cannot answer right now.", "Retry shortly."),
}


def type_url(kind: str) -> str:
    """The `type` of a problem document: this installation's page for it."""
    from costguardian.rendering import external_url

    return external_url("docs.problem", kind=kind)
