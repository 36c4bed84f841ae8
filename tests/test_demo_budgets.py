"""The demo organization's budgets: sized from its usage, checked once, created once."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
import time_machine

from costguardian.models import Budget, BudgetAlert, Organization
from costguardian.services.budgets import budgets
from costguardian.services.demo import seed as demo, usage as demo_usage

pytestmark = pytest.mark.dated  # runs again at CI's chosen instants (.ci/run)


@time_machine.travel(datetime(2026, 11, 18, 15, 0, tzinfo=timezone.utc), tick=False)
def test_demo_budgets_show_every_state_and_are_created_once(app_ctx, tmp_path):
    """Mid-month, so that the month has spend to size the budgets from (on the
    1st at 00:30 every budget takes its fixed amount, as the test below shows)."""
    demo.seed(tmp_path)
    org = Organization.get(Organization.name == demo.DEMO_ORG)
    demo_usage.generate(org, 3000, seed=5)

    assert demo.seed_budgets(org) == len(demo.BUDGETS)

    by_name = {st.budget.name: st for st in budgets.org_statuses(org)}
    assert set(by_name) == {b[0] for b in demo.BUDGETS}
    assert by_name["OpenAI"].percent >= 80  # one is already past 80%
    assert by_name["Engineering (hard limit)"].budget.enforcement == "hard"
    assert by_name["Engineering (hard limit)"].budget.scope_department_id is not None
    assert by_name["Production traffic (weekly)"].budget.period == "weekly"
    assert by_name["Company AI spend"].budget.owner.email == demo.OWNER_EMAIL
    assert all(st.forecast is not None for st in by_name.values())  # the periodic check ran
    assert BudgetAlert.select().where(BudgetAlert.budget == by_name["OpenAI"].budget,
                                      BudgetAlert.threshold == 80).exists()

    assert demo.seed_budgets(org) == 0
    assert Budget.in_org(org).count() == len(demo.BUDGETS)


def test_demo_budgets_without_usage_use_fixed_amounts(app_ctx, tmp_path):
    demo.seed(tmp_path)
    org = Organization.get(Organization.name == demo.DEMO_ORG)
    assert demo.seed_budgets(org) == len(demo.BUDGETS)
    amounts = {b.name: b.amount_nanos // 1_000_000_000 for b in Budget.in_org(org)}
    assert amounts == {name: fallback for name, _, _, _, fallback, _ in demo.BUDGETS}
