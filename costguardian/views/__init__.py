"""One blueprint per area, registered here."""
from flask import Flask


def register_blueprints(app: Flask) -> None:
    from costguardian.views import account, api, audit, auth, dashboard, health, keys, members, orgs, settings, usage
    from costguardian.views import prices

    for module in (health, auth, dashboard, orgs, settings, members, keys, usage, prices, audit, account, api):
        app.register_blueprint(module.bp)
