"""One blueprint per area, registered here."""
from flask import Flask


def register_blueprints(app: Flask) -> None:
    from costguardian.views import account, api, audit, auth, dashboard, health, keys, members, orgs, settings, usage
    from costguardian.views import prices
    from costguardian.views import invitations
    from costguardian.views import notifications
    from costguardian.views import departments, team
    from costguardian.views import webhooks
    from costguardian.views import admin_outbox, notification_templates, unsubscribe
    from costguardian.views import budgets
    from costguardian.views import providers
    from costguardian.views import gateway
    from costguardian.views import gateway_setup
    from costguardian.views import request_log
    from costguardian.views import billing
    from costguardian.views import onboarding
    from costguardian.views import admin_billing
    from costguardian.views import admin_impersonation, admin_overview, admin_users, admin_orgs, admin_usage
    from costguardian.views import admin_health, admin_audit, admin_config, api_admin

    from costguardian.views import reconciliation

    app.register_blueprint(reconciliation.api_bp)
    for module in (health, auth, dashboard, orgs, settings, members, keys, usage, prices, audit, account, api,
                   invitations, notifications, departments, team, webhooks, notification_templates, unsubscribe,
                   admin_outbox, budgets, providers, gateway, gateway_setup, request_log, billing, onboarding,
                   admin_billing,
                   admin_impersonation, admin_overview, admin_users, admin_orgs, admin_usage, admin_health, admin_audit,
                   admin_config, api_admin, reconciliation):
        app.register_blueprint(module.bp)
    from costguardian.views import chat
    app.register_blueprint(chat.bp)
    from costguardian.views import docs
    app.register_blueprint(docs.bp)
