"""People and organizations: accounts, organizations and roles, members,
invitations, departments, team analytics, the activity feed and the audit log.

Others may import every module here: `accounts`, `orgs`, `members`,
`invitations`, `departments`, `analytics`, `activity`, `audit`.
"""
__all__ = ["accounts", "activity", "analytics", "audit", "departments", "invitations", "members", "orgs"]
