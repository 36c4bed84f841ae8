"""The usage explorer's query string: date range, filters and grouping, read
from a GET request and checked against the organization's own data.

Every request of the explorer and its exports goes through `parse`, so a
bookmarked URL, the htmx request and the CSV download read the same filter.
Unknown values are errors with a message (never an empty page that looks
like "no spend", never a 500); values of another organization are unknown.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from costguardian.models import ApiKey, Department
from costguardian.timefmt import parse_day
from costguardian.services.usage import queries as usage_queries
from costguardian.services.usage.queries import MAX_RANGE_DAYS, PRESETS, SOURCES, UsageFilter

# URL names of the groupings (what a person reads in the address bar) and
# the service's names for them.
GROUPS = {"provider": "provider", "model": "model", "department": "department", "user": "user",
          "key": "api_key", "tag": "tag", "day": "day"}
GROUP_LABELS = {"provider": "Provider", "model": "Model", "department": "Department", "user": "User",
                "key": "API key", "tag": "Tag", "day": "Day"}
DEFAULT_PRESET, DEFAULT_GROUP = "this_month", "model"
CUSTOM = "custom"
TEXT_FILTERS = ("provider", "model", "user", "tag")
MAX_TEXT = 200
EARLIEST, LATEST = date(2000, 1, 1), date(2100, 12, 31)


@dataclass
class ExplorerQuery:
    start: date
    end: date
    preset: str = DEFAULT_PRESET  # a PRESETS key, or "custom" for the from/to dates
    group: str = DEFAULT_GROUP  # a GROUPS key (URL name)
    provider: str = ""
    model: str = ""
    user: str = ""
    tag: str = ""
    department: Department | None = None
    key: ApiKey | None = None
    no_key: bool = False  # key=0: the usage sent without a key
    no_department: bool = False  # department=0
    source: str = ""  # "" every source, else a SOURCES key (gateway, ingest)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def service_group(self) -> str:
        """The service's name of the grouping."""
        return GROUPS[self.group]

    def usage_filter(self) -> UsageFilter:
        flt = UsageFilter(start=self.start, end=self.end, source=self.source)
        for name in ("provider", "model", "tag"):
            value = getattr(self, name)
            if value:
                getattr(flt, name + "s").append(value)
        if self.user:
            flt.users.append(self.user)
        if self.key is not None or self.no_key:
            flt.api_key_ids.append(self.key.id if self.key is not None else usage_queries.NO_KEY)
        if self.department is not None or self.no_department:
            flt.department_ids.append(self.department.id if self.department is not None
                                      else usage_queries.NO_DEPARTMENT)
        return flt

    def params(self, **changes) -> dict:
        """The canonical query string of this view (defaults left out), with
        `changes` applied; a change to None drops the parameter."""
        params: dict = {}
        if self.preset == CUSTOM:
            params["from"], params["to"] = self.start.isoformat(), self.end.isoformat()
        elif self.preset != DEFAULT_PRESET:
            params["preset"] = self.preset
        for name in ("provider", "model", "user", "tag"):
            if getattr(self, name):
                params[name] = getattr(self, name)
        if self.department is not None or self.no_department:
            params["department"] = self.department.id if self.department is not None else 0
        if self.key is not None or self.no_key:
            params["key"] = self.key.id if self.key is not None else 0
        if self.source:
            params["source"] = self.source
        if self.group != DEFAULT_GROUP:
            params["group_by"] = self.group
        if "from" in changes or "to" in changes:
            params.pop("preset", None)
        if changes.get("preset"):
            params.pop("from", None)
            params.pop("to", None)
        params.update(changes)
        if params.get("preset") == DEFAULT_PRESET:
            params.pop("preset")
        if params.get("group_by") == DEFAULT_GROUP:
            params.pop("group_by")
        return {k: v for k, v in params.items() if v is not None}

    def drill_params(self, key) -> dict | None:
        """Where a row of the table leads: the explorer filtered on the row's
        value and grouped by the next useful dimension (None: no link)."""
        if self.group == "day":
            return self.params(**{"from": key.isoformat(), "to": key.isoformat(), "group_by": "model"})
        if self.group == "user" and not key:
            return None  # usage without a user has no value to filter on
        following = {"provider": "model", "model": "day", "department": "user", "user": "day", "key": "day",
                     "tag": "model"}
        return self.params(**{self.group: key, "group_by": following[self.group]})

    @property
    def filtered(self) -> bool:
        return any((self.provider, self.model, self.user, self.tag, self.department, self.key, self.no_key,
                    self.no_department, self.source))


def _date(args, name: str, errors: dict) -> date | None:
    raw = (args.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = parse_day(raw)
    except ValueError as exc:
        errors[name] = str(exc)
        return None
    if not EARLIEST <= value <= LATEST:
        errors[name] = f"Choose a date between {EARLIEST.year} and {LATEST.year}."
        return None
    return value


def _dates(args, today: date, query: ExplorerQuery) -> None:
    """A named range wins; without one, the from/to dates ("custom")."""
    errors = query.errors
    preset = (args.get("preset") or "").strip()
    if not preset:
        preset = CUSTOM if (args.get("from") or args.get("to")) else DEFAULT_PRESET
    if preset != CUSTOM and preset not in PRESETS:
        errors["preset"] = (f"“{preset[:40]}” is not a date range; choose one of "
                            f"{', '.join(PRESETS.values())}, or custom dates.")
        preset = DEFAULT_PRESET
    query.preset = preset
    if preset != CUSTOM:
        query.start, query.end = usage_queries.preset_range(preset, today)
        return
    start, end = _date(args, "from", errors), _date(args, "to", errors)
    query.start = start or (end or today).replace(day=1)
    query.end = end or max(today, query.start)
    if query.end < query.start:
        errors["to"] = "The end date is before the start date."
    elif (query.end - query.start).days >= MAX_RANGE_DAYS:
        errors["to"] = "Choose a range of at most three years."


def _text(args, name: str) -> str:
    return (args.get(name) or "").strip()[:MAX_TEXT + 1]


_UNKNOWN = {
    "provider": "No usage from a provider named “{}” in this organization.",
    "model": "No usage of a model named “{}” in this organization.",
    "user": "No usage by a user “{}” in this organization.",
    "tag": "No usage tagged “{}” in this organization.",
}


def parse(org, args, today: date | None = None) -> ExplorerQuery:
    """The explorer query in `args` (request.args), with `errors` for every
    parameter that is malformed or names something this organization lacks."""
    today = today or usage_queries.today(org)
    query = ExplorerQuery(start=today, end=today)
    _dates(args, today, query)
    errors = query.errors

    group = _text(args, "group_by") or DEFAULT_GROUP
    group = "key" if group == "api_key" else group  # the JSON API's name for it
    if group in GROUPS:
        query.group = group
    else:
        errors["group_by"] = f"“{group[:40]}” cannot be grouped by; choose one of {', '.join(GROUPS)}."

    for name in TEXT_FILTERS:
        value = _text(args, name)
        if not value:
            continue
        setattr(query, name, value[:MAX_TEXT])
        if len(value) > MAX_TEXT or not usage_queries.value_exists(org, name, value):
            errors[name] = _UNKNOWN[name].format(value[:60])

    for name, model, missing in (("department", Department, "No such department in this organization."),
                                 ("key", ApiKey, "No such API key in this organization.")):
        raw = _text(args, name)
        if raw == "0":  # "none": usage sent without a department / key
            setattr(query, f"no_{name}", True)
        elif raw:
            setattr(query, name, model.get_in_org(org, raw))  # None for another tenant's id or garbage
            if getattr(query, name) is None:
                errors[name] = missing

    source = _text(args, "source")
    if source and source != "all":
        if source not in SOURCES:
            errors["source"] = f"“{source[:40]}” is not a source; choose all, {', '.join(SOURCES)}."
        else:
            query.source = source
            if query.tag or query.group == "tag":
                errors["source"] = ("A source cannot be combined with a tag filter or grouping by tag (the per-tag "
                                    "totals do not record the source); choose All sources, or clear the tag.")
    return query
